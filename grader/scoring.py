"""Points from the rubric applied to check outcomes (parent process).

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
from grader.checks import runner
from grader.results import CheckOutcome, ScoredCheck

BUILTIN = "originality.no_builtin_norm"
NO_TRAIN = "training stage not run (--no-train)"
PACK_PREFIX = "cannot be checked with this pack: "
KINDS = ("machine", "no_train", "pack")


def left_out_kind(check_id: str, why: str) -> str | None:
    """Which of the rule's reasons leaves this not-run check out of the maximum; None when it is
    none of them (then the check counts, as failed)."""
    if why == NO_TRAIN:
        return "no_train"
    if why.startswith(PACK_PREFIX):
        return "pack"
    if why and why in {runner.not_applicable(check_id, False), runner.not_applicable(check_id, True)}:
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
        left_out.append({"check": cid, "points": spec.points, "kind": left_out_kind(cid, why), "reason": why})
    return {"points": rubric_points - sum(x["points"] for x in left_out), "rubric_points": rubric_points,
            "left_out": left_out}


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
        if o.passed is None and left_out_kind(o.check_id, o.skipped) is None:
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
            if rubric.builtin_norm_zeroes == "all" or o.builtin_ops or (static_violation and o.check_id in numeric):
                zeroed = "scored 0: torch's built-in normalisation was used (see originality.no_builtin_norm)"
                pts = 0.0
        scored.append(ScoredCheck(o, spec.title, pts, max_score, spec.visibility, spec.advisory, zeroed))
    total = sum(s.score for s in scored)
    maximum = sum(s.max_score for s in scored)
    return scored, not_run, total, maximum
