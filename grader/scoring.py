"""Points from the rubric applied to check outcomes (parent process).

The only place where a verdict becomes a number. Checks that were not run (no CUDA device,
training under --no-train) are left out of both the score and the maximum.
"""
from grader.checks import runner
from grader.results import CheckOutcome, ScoredCheck

BUILTIN = "originality.no_builtin_norm"


def score(outcomes: list[CheckOutcome], rubric, static_violation: bool):
    """(scored checks, not-run [(id, why)], score, max_score)."""
    by_id = {o.check_id: o for o in outcomes}
    builtin = by_id.get(BUILTIN)
    # caught, not merely not run (a submission that never loaded has no verdict here)
    caught = builtin is not None and builtin.passed is False and builtin.diagnosis is not None
    scored, not_run = [], []
    numeric = runner.numeric_ids()
    for o in outcomes:
        spec = rubric.spec(o.check_id)
        if o.passed is None:
            not_run.append((o.check_id, o.skipped))
            continue
        max_score = 0.0 if spec.advisory else spec.points
        pts = max_score if o.passed else 0.0
        zeroed = ""
        if caught and o.check_id != BUILTIN and not spec.advisory and o.passed:
            if rubric.builtin_norm_zeroes == "all" or o.builtin_ops or (static_violation and o.check_id in numeric):
                zeroed = "scored 0: torch's built-in normalisation was used (see originality.no_builtin_norm)"
                pts = 0.0
        scored.append(ScoredCheck(o, spec.title, pts, max_score, spec.visibility, spec.advisory, zeroed))
    total = sum(s.score for s in scored)
    maximum = sum(s.max_score for s in scored)
    return scored, not_run, total, maximum
