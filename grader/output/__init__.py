"""Renderers of a GradeResult (parent process): terminal.py, gradescope.py. They only read results."""
