"""What is checked and how (parent process).

inputs.py    seeded inputs built so that the plausible wrong formulas disagree
compare.py   tolerance comparison with max abs/rel error and the worst channel
mistakes.py  the catalogue of known mistakes, each a runnable variant of the reference
battery.py   the checks: ask the sandboxed worker, compare with the reference, diagnose
static.py    the source scan for torch's built-in normalisation (never executes the file)
"""
