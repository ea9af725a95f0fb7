"""The maximum rule (grader/scoring.py): the rubric's points less only what the machine, --no-train
or the check pack leave out, never what the submission did; and every output states it with the
same sentence. Most of this needs no sandbox: outcomes are built here, as the checks return them."""
import json
import types

import pytest

from grader import grading, scoring
from grader.checks import runner
from grader.checks.oracle import NotInPack, PackOracle
from grader.output import gradescope, report, terminal
from grader.output.i18n import skipped
from grader.output.text import maximum_text
from grader.results import CheckOutcome, GradeResult, RunStatus


def _outcomes(rubric, cuda, train: bool, fail=()):
    """What a grading returns: every unit check passed (except fail), checks the machine cannot run
    not run, the training checks passed or not run (--no-train)."""
    out = []
    for cid in grading.check_ids(rubric):
        why = runner.not_applicable(cid, cuda)
        out.append(CheckOutcome(cid, None, skipped=why) if why else CheckOutcome(cid, cid not in fail, "x"))
    for cid in grading.training_ids(rubric):
        out.append(CheckOutcome(cid, True) if train else CheckOutcome(cid, None, skipped=scoring.NO_TRAIN))
    return out


def _result(rubric, outcomes, status=RunStatus.GRADED):
    scored, not_run, total, mx = scoring.score(outcomes, rubric)
    return GradeResult("batchnorm.py", "0" * 64, status, "", scored, total, mx, grading.run_facts(rubric, False), 1.0,
                       not_run=not_run, maximum=scoring.maximum(rubric, not_run))


def _points(rubric, ids):
    return sum(c.points for c in rubric.checks if c.id in ids and not c.advisory)


@pytest.mark.parametrize("cuda", [False, True])
def test_a_correct_layer_scores_its_maximum_with_and_without_training(rubric, cuda):
    total = _points(rubric, {c.id for c in rubric.checks})
    cuda_only = {c.id for c in rubric.checks if runner.not_applicable(c.id, False)}
    assert cuda_only, "the default rubric has a check that needs CUDA"
    machine = set() if cuda else cuda_only
    for train in (False, True):
        r = _result(rubric, _outcomes(rubric, cuda, train))
        left = machine | (set() if train else set(grading.training_ids(rubric)))
        assert r.max_score == total - _points(rubric, left) == r.maximum["points"]
        assert r.score == r.max_score  # 100%, whether the student trained or not
        assert r.maximum["rubric_points"] == total
        kinds = {x["check"]: x["kind"] for x in r.maximum["left_out"]}
        assert kinds == {**{c: "machine" for c in machine},
                         **({} if train else {c: "no_train" for c in grading.training_ids(rubric)})}


def test_nothing_the_submission_does_changes_the_maximum(rubric):
    correct = _result(rubric, _outcomes(rubric, False, True))
    # a check that ended without a verdict for a reason of the submission's own counts, as failed
    odd = _outcomes(rubric, False, True)
    odd[0] = CheckOutcome(odd[0].check_id, None, skipped="the worker vanished")
    r = _result(rubric, odd)
    assert r.max_score == correct.max_score and r.score == correct.score - _points(rubric, {odd[0].check_id})
    assert odd[0].check_id not in {c for c, _ in r.not_run}
    # code that never loads: the same maximum, with training and without
    broken_train = grading.not_gradable("x.py", rubric, "SyntaxError", stage=object(), cuda=False)
    broken_no_train = grading.not_gradable("x.py", rubric, "SyntaxError", stage=None, cuda=False)
    assert (broken_train.score, broken_train.max_score) == (0, correct.max_score)
    no_train = _result(rubric, _outcomes(rubric, False, False))
    assert broken_no_train.max_score == no_train.max_score < correct.max_score
    assert broken_no_train.maximum == no_train.maximum


def test_a_check_the_pack_cannot_answer_is_left_out_and_said_in_chinese(rubric):
    from conftest import ROOT
    from grader import pack
    oracle = PackOracle(pack.read(ROOT / "student_template" / "batchnorm.bnpack"))
    entry = next(iter(oracle.pack.entries))
    check_id, label, op = entry.split("|")
    stored = oracle.pack.entries[entry]["inputs"]

    def ask(inputs):
        # the runner turns the oracle's NotInPack into the outcome, as for a real check
        decl = types.SimpleNamespace(id=check_id, fn=lambda ctx: oracle.answer(check_id, label, op, None, inputs))
        return runner._attempt(None, decl)

    missing = runner._attempt(None, types.SimpleNamespace(
        id=check_id, fn=lambda ctx: oracle.answer(check_id, "no such label", op, None, stored)))
    other = ask({k: (v + 1 if hasattr(v, "dtype") and v.dtype.is_floating_point else v) for k, v in stored.items()}
                if isinstance(stored, dict) else stored)
    for o in (missing, other):
        assert o.passed is None and o.skipped.startswith(scoring.PACK_LEAD), o
        zh = skipped(o.skipped, "zh")
        assert "cannot be checked" not in zh and zh.startswith("无法用此检查包检查")
        assert "holds no" not in zh and "differ from" not in zh  # the detail is translated too
    assert "no such label" in skipped(missing.skipped, "zh")
    assert f"torch {oracle.pack.meta.get('torch')}" in skipped(other.skipped, "zh")
    outcomes = [o if o.check_id != check_id else missing for o in _outcomes(rubric, False, False)]
    r = _result(rubric, outcomes)
    assert {"check": check_id, "points": _points(rubric, {check_id}), "kind": "pack",
            "reason": missing.skipped} in r.maximum["left_out"]
    assert "检查包中没有" in maximum_text(r.maximum, "zh")
    assert "无法用此检查包检查" in terminal.render(r, "zh", colour=False)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_output_states_the_maximum_the_same_way(rubric, lang):
    r = _result(rubric, _outcomes(rubric, False, False, fail={"forward.train.4d"}))
    sentence = maximum_text(r.maximum, lang)
    # the sentence's numbers are the result's: maximum, the rubric's total and what was left out
    assert f"{r.max_score:g}" in sentence and f"{r.maximum['rubric_points']:g}" in sentence
    assert f"{r.maximum['rubric_points'] - r.max_score:g}" in sentence and "--no-train" in sentence
    assert sentence in terminal.render(r, lang, colour=False)
    html = report.render(r, lang)
    assert sentence.replace("'", "&#39;") in html
    data = json.loads(json.dumps(gradescope.to_gradescope(r, lang), ensure_ascii=False))
    ex = data["extra_data"]
    assert ex["max_score"] == ex["maximum"]["points"] == sum(t["max_score"] for t in data["tests"])
    assert ex["maximum"]["statement"][lang] == sentence and sentence in data["output"].splitlines()
    full = _result(rubric, _outcomes(rubric, True, True))
    assert maximum_text(full.maximum, lang).startswith(
        {"en": f"Maximum {full.max_score:g} points: every graded check", "zh": f"满分 {full.max_score:g} 分：评分标准中的全部"}[lang])
