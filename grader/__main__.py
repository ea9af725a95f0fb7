"""`python -m grader`: the same as bn-grade (grader process; cli.main)."""
import sys

from grader.cli import main

sys.exit(main())
