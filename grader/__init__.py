"""BatchNorm homework grader.

Layout (data flows one way, top to bottom; every module here runs in the grader process except
sandbox/inside/, which runs in the sandbox and imports nothing else of the grader; README "How it
works" has the same list, and tests/test_layering.py holds the import rules):
  cli.py            `main(argv) -> int`: arguments, paths, exit codes (grade.py, __main__.py)
  intake.py         a folder, .py, .zip or .ipynb -> the one .py to grade (parsed, never run)
  grading.py        one submission through the pipeline -> GradeResult (grade_entry, grade_file)
  slicing.py        BatchNorm2d and what it uses, cut from that file (parsed, never run)
  sandbox/          the trust boundary: sandboxed workers run student code and only that
  checks/           inputs, expected values, comparisons, mistake search, source scan
  training/         the LeNet-5 / CIFAR-10 experiment (the student's run in the sandbox)
  scoring.py        rubric points applied to check outcomes, and the maximum (no torch)
  output/           terminal table, results.json, HTML report, JUnit, GitHub; i18n (no torch)
  batch.py          a class: a pool of gradings, shards, resume
  cpus.py           how many CPUs this job may use (--jobs, torch threads)
  shards.py         which share of a class a task of a job array grades
  gradebook.py      gradebook.csv and summary.html, rebuilt from OUT (no torch)
  similarity.py     near-identical submissions
  notebook.py       `notebook.check(BatchNorm2d)` in Jupyter
  gradescope_bundle.py  the autograder zip for Gradescope
  pack.py, packmaker.py the student edition's check pack: read, make
  rubric.py         typed rubric loaded from YAML
  results.py        the result types every stage passes along (no imports from the grader)
  errors.py         the errors raised on purpose: GraderError, UsageError (exit 2), SandboxError, LoadFailed
"""
__version__ = "0.1.0"
