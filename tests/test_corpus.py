"""Every corpus submission gets exactly the verdict its header promises.

Header lines (see tests/corpus/*.py):
  # expect: full                          all graded checks pass
  # expect: fail ID=CODE ID=CODE ...      exactly these graded checks fail, each with that
                                          diagnosis (CODE '-' for none; CODE+CODE for every
                                          mistake named, most costly first)
  # expect: error | timeout               not gradable: score 0 with a reason
  # notes: ID=CODE ...                    exactly these advisory findings
"""
import pytest

from conftest import CORPUS, ROOT

FILES = sorted(CORPUS.glob("*.py"))
SLOW = {"broken_endless_loop.py", "broken_hang_in_forward.py", "broken_hang_in_eval.py"}
# seeds other than the rubric's: an instructor's private seed must give the same verdicts
OTHER_SEEDS = (7, 424242)


def expectation(path):
    exp = {"kind": None, "fail": {}, "notes": {}}
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            words = line.split(":", 1)[1].split()
            exp["kind"] = words[0]
            exp["fail"] = dict(w.split("=") for w in words[1:])
        elif line.startswith("# notes:"):
            exp["notes"] = dict(w.split("=") for w in line.split(":", 1)[1].split())
    assert exp["kind"] in ("full", "fail", "error", "timeout"), f"{path.name} has no '# expect:' header"
    return exp


def _codes(outcome):
    assert (outcome.diagnosis is None) == (not outcome.diagnoses)
    assert outcome.diagnosis is None or outcome.diagnosis is outcome.diagnoses[0]
    return "+".join(d.code for d in outcome.diagnoses) or "-"


def verdicts(result):
    # device.cuda runs only where there is a GPU, and there the template's plain-tensor running
    # statistics fail it by design (they stay on the CPU): the headers state CPU verdicts
    failed = {s.outcome.check_id: _codes(s.outcome)
              for s in result.checks if not s.advisory and not s.passed and s.outcome.check_id != "device.cuda"}
    notes = {s.outcome.check_id: _codes(s.outcome) for s in result.checks if s.advisory and s.outcome.passed is False}
    return failed, notes


def assert_verdict(path, result):
    exp = expectation(path)
    failed, notes = verdicts(result)
    if exp["kind"] in ("error", "timeout"):
        assert result.status.value == exp["kind"], (result.status, result.reason)
        assert result.score == 0
        assert result.reason.strip()
        return
    assert result.status.value == "graded", result.reason
    if exp["kind"] == "full":
        assert failed == {}, failed
        cuda = sum(s.max_score - s.score for s in result.checks if s.outcome.check_id == "device.cuda")
        assert result.score + cuda == result.max_score > 0
    else:
        assert failed == exp["fail"]
        assert result.score < result.max_score
    assert notes == exp["notes"]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_verdict(path, graded_once):
    assert_verdict(path, graded_once(path))


@pytest.mark.parametrize("seed", OTHER_SEEDS)
@pytest.mark.parametrize("path", [p for p in FILES if p.name not in SLOW],
                         ids=[p.name for p in FILES if p.name not in SLOW])
def test_corpus_verdict_other_seed(path, seed, grade, quick_rubric):
    import dataclasses
    assert_verdict(path, grade(path, dataclasses.replace(quick_rubric, seed=seed)))


def test_reference_gets_full_marks(grade):
    r = grade(ROOT / "reference" / "batchnorm.py")
    failed, notes = verdicts(r)
    assert failed == {} and notes == {}
    assert r.score == r.max_score > 0


def test_corpus_covers_every_known_mistake():
    # every replayable mistake in the catalogue has a corpus submission that is diagnosed with it
    from grader.checks.mistakes import CATALOGUE
    diagnosed = set()
    for p in FILES:
        exp = expectation(p)
        for codes in list(exp["fail"].values()) + list(exp["notes"].values()):
            diagnosed |= set(codes.split("+"))
    replayable = {code for code, m in CATALOGUE.items() if m.variant is not None}
    from test_mistakes_search import SEARCH_ONLY  # found on synthetic output there, not by a corpus file
    missing = replayable - diagnosed - SEARCH_ONLY
    assert not missing, missing


def test_grad_mode_only_costs_when_the_rubric_says_so(grade, quick_rubric):
    # the textbook's switch on torch.is_grad_enabled() alone: full marks by default (see the
    # corpus headers); an instructor's `grad_mode_only: costs` runs eval with grad enabled too
    import dataclasses
    strict = dataclasses.replace(quick_rubric, grad_mode_only="costs")
    for name in ("mistake_grad_mode_only.py", "mistake_updates_in_eval_with_grad.py"):
        failed, _ = verdicts(grade(CORPUS / name, strict))
        assert failed == {"eval.frozen": "running_updated_in_eval"}, (name, failed)
    failed, notes = verdicts(grade(CORPUS / "correct_textbook.py", strict))
    assert failed == {} and "advice.grad_mode" not in notes
