"""Renderers of a GradeResult and what they share (grader process; no torch: they only read
results).

terminal.py    the table printed after grading
gradescope.py  Gradescope's results.json
report.py      the self-contained HTML report (templates/report.html.j2)
junit.py       JUnit XML, one testcase per check
github.py      GitHub Actions: job summary, annotations, GitHub Classroom points
progress.py    progress bars of the training stage
charts.py      inline SVG loss curves, and the series styles the summary shares
text.py        a scored check's text and the maximum's sentence, the same in every renderer
i18n.py        the renderers' words and why a check was not run, in English and Chinese (check
               titles live in the rubric, mistakes in checks/mistakes.py)
html.py        the one Jinja2 environment (report.py, gradebook.py's summary.html)
files.py       atomic writes and the cache lock, for everything the grader writes
"""
