"""What is checked and how (parent process; handlers of the sandboxed side live in
grader/sandbox/inside/handlers.py).

registry.py  one declaration per check (@check: id, numeric, when it cannot run, findings, any_rank)
worker.py    the client of the sandboxed worker: Context, StudentError, Failed
structure.py, forward.py, running.py, evaluation.py, gradients.py, hygiene.py, integration.py,
device.py, advice.py   the checks, by topic
runner.py    runs the declared checks for one submission; the built-in normalisation verdict
search.py    the mistake search: formula variants (one mistake, then pairs) replayed on a check's inputs
crashes.py   crashes explained from the worker's evidence and confirming probes
mistakes.py  the formula variants described (fields) and the catalogue of mistakes (titles, hints)
oracle.py    every expected value and variant output the checks use, by (check, label, op); the
             student edition's oracle answers from a check pack (grader/pack.py)
computed.py  the full edition's oracle: reference/ and variants.py (not in the student edition)
variants.py  the variants as runnable formulas (not in the student edition)
inputs.py    seeded inputs built so that the plausible wrong formulas disagree
compare.py   tolerance comparison with max abs/rel error and the worst channel
static.py    the source scan for torch's built-in normalisation (never executes the file)
"""
