"""BatchNorm homework grader.

Layout (data flows one way, top to bottom):
  submission.py   read + hash the student's file, static scan (parent, never executes it)
  sandbox/        the trust boundary: a forked child runs student code and only that
  checks/         inputs, reference comparisons and mistake diagnosis (parent)
  scoring.py      rubric points applied to check outcomes (parent)
  output/         terminal table and Gradescope results.json (parent)
  results.py      the result types every stage passes along
  rubric.py       typed rubric loaded from YAML
  cli.py          `main(argv) -> int`
"""
__version__ = "0.1.0"
