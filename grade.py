#!/usr/bin/env python3
"""Entry point: `python grade.py SUBMISSION [options]` (same as the installed `bn-grade`)."""
import sys

from grader.cli import main

if __name__ == "__main__":
    sys.exit(main())
