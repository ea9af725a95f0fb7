"""Points from the rubric applied to check outcomes (grader process; imports no torch and no
check: what it needs to know about the checks comes in with the outcomes and arguments).

The only place where a verdict becomes a number, and where the maximum is decided. The rule
(README "The maximum", stated by every output through maximum()):

  maximum = the rubric's points (advisory checks have none), less the checks this grading
  cannot run for reasons that have nothing to do with the submission:
    - machine:  the machine cannot run it (device.cuda without a CUDA device);
    - no_train: the training stage was switched off (--no-train);
    - pack:     the student edition's check pack holds no answer for it.
  Nothing the submission does removes a check from the maximum: code that does not load,
  crashes or times out scores 0 of the same maximum. So every submission graded with one rubric,
  on one kind of machine, with or without training, has the same maximum, and a correct layer
  scores 100% with --no-train as with training.
"""
from grader.checks.registry import BUILTIN
from grader.output.i18n import PACK_LEAD, SKIPPED
from grader.results import CheckOutcome, ScoredCheck

NO_TRAIN = SKIPPED["no_train"]["en"]
# what a check's declaration says when this machine cannot run it (checks/registry.py `needs`)
MACHINE = frozenset(text["en"] for code, text in SKIPPED.items() if code != "no_train")


def left_out_kind(why: str) -> str | None:
    """Which of the rule's reasons leaves this not-run check out of the maximum; None when it is
    none of them (then the check counts, as failed)."""
    if why == NO_TRAIN:
        return "no_train"
    if why.startswith(PACK_LEAD):
        return "pack"
    if why in MACHINE:
        return "machine"
    return None


def maximum(rubric, not_run) -> dict:
    """The maximum and how it follows from the rubric: {points, rubric_points, left_out: [{check,
    points, kind, reason}]} (results.json's extra_data.maximum; output/text.py states it)."""
    rubric_points = sum(c.points for c in rubric.checks if not c.advisory)
    left_out = []
    for cid, why in not_run:
        spec = rubric.spec(cid)
        if spec is None or spec.advisory:
            continue
        left_out.append({"check": cid, "points": spec.points, "kind": left_out_kind(why), "reason": why})
    return {"points": rubric_points - sum(x["points"] for x in left_out), "rubric_points": rubric_points,
            "left_out": left_out}


def score(outcomes: list[CheckOutcome], rubric, static_zeroes=frozenset()):
    """(scored checks, not-run [(id, why)], score, max_score). static_zeroes: the checks a passing
    verdict of which scores 0 once built-in normalisation is caught, because the source scan found
    it inside the class (grading passes the numeric checks then, else nothing)."""
    by_id = {o.check_id: o for o in outcomes}
    builtin = by_id.get(BUILTIN)
    # caught, not merely not run (a submission that never loaded has no verdict here)
    caught = builtin is not None and builtin.passed is False and builtin.diagnosis is not None
    scored, not_run = [], []
    for o in outcomes:
        spec = rubric.spec(o.check_id)
        if o.passed is None and left_out_kind(o.skipped) is None:
            # not run for a reason of the submission's own: it counts, as failed, so the maximum
            # stays the one every submission has
            o = CheckOutcome(o.check_id, False, f"not run: {o.skipped or 'no reason given'}", notes=o.notes)
        if o.passed is None:
            not_run.append((o.check_id, o.skipped))
            continue
        max_score = 0.0 if spec.advisory else spec.points
        pts = max_score if o.passed else 0.0
        zeroed = ""
        if caught and o.check_id != BUILTIN and not spec.advisory and o.passed:
            if rubric.builtin_norm_zeroes == "all" or o.builtin_ops or o.check_id in static_zeroes:
                zeroed = "scored 0: torch's built-in normalisation was used (see originality.no_builtin_norm)"
                pts = 0.0
        scored.append(ScoredCheck(o, spec.title, pts, max_score, spec.visibility, spec.advisory, zeroed))
    total = sum(s.score for s in scored)
    maximum = sum(s.max_score for s in scored)
    return scored, not_run, total, maximum
