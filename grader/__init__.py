"""BatchNorm homework grader.

Layout (data flows one way, top to bottom; every module here runs in the grader process
except grader/sandbox/inside/, which runs in the sandbox):
  intake.py       a folder, .py, .zip or .ipynb -> the one .py to grade (parsed, never run)
  slicing.py      BatchNorm2d and what it uses, cut from that file (parsed, never run)
  sandbox/        the trust boundary: a bubblewrap sandbox whose workers run student code and only that
  checks/         inputs, reference comparisons, mistake search, source scan
  grading.py      one submission through the pipeline -> GradeResult
  scoring.py      rubric points applied to check outcomes
  output/         terminal table, results.json, HTML report, JUnit
  batch.py, gradebook.py   a class
  results.py      the result types every stage passes along
  rubric.py       typed rubric loaded from YAML
  cli.py          `main(argv) -> int`
"""
__version__ = "0.1.0"
