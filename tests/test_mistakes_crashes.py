"""Crashes explained from evidence, checks independent of each other, and no false accusation:
graded corpus files, with what their messages must say."""
from conftest import CORPUS, write


def _outcomes(result):
    return {s.outcome.check_id: s.outcome for s in result.checks}


def _line_of(path, text):
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


def test_a_4d_only_layer_is_told_where_the_2d_input_fails(grade):
    path = CORPUS / "mistake_only_4d.py"
    o = _outcomes(grade(path))
    msg = o["forward.train.2d"].message
    line = _line_of(path, "torch.var_mean(X, dim=(0, 2, 3)")
    assert f"handles 4-D input but fails on (N, C) input at line {line}" in msg, msg
    assert "tensors there:" in msg and "X (2, " in msg
    assert [d.code for d in o["forward.train.2d"].diagnoses] == ["only_4d"]
    assert o["forward.train.4d"].passed and o["eval.frozen"].passed


def test_a_crash_of_a_c_shaped_statistic_is_confirmed_by_a_probe_not_by_its_text(grade):
    o = _outcomes(grade(CORPUS / "mistake_no_keepdim.py"))["forward.train.4d"]
    assert "must match the size of tensor" in o.message
    assert "probe: it runs when W == C" in o.message and "mean (" in o.message
    assert [d.code for d in o.diagnoses] == ["no_keepdim"]
    # the same text from another cause gets that cause, never the keepdim label
    o = _outcomes(grade(CORPUS / "mistake_gamma_c_shape.py"))["forward.train.4d"]
    assert "must match the size of tensor" in o.message
    assert [d.code for d in o.diagnoses] == ["affine_last_axis"]


def test_batch_axis_statistics_are_read_from_the_state_they_leave(grade):
    o = _outcomes(grade(CORPUS / "mistake_batch_axis_only.py"))["running_stats"]
    assert "over dims (0,)" in o.message, o.message
    assert [d.code for d in o.diagnoses] == ["wrong_axes_batch"]


def test_a_broken_path_costs_only_its_own_checks(grade):
    o = _outcomes(grade(CORPUS / "mistake_only_2d.py"))
    for cid in ("hyperparams.eps", "hyperparams.momentum", "eval.frozen", "hygiene.input_unchanged",
                "hygiene.stats_detached"):
        assert o[cid].passed, (cid, o[cid].message)
        assert any("checked with (N, C) input" in n for n in o[cid].notes), cid
    assert o["structure.4d"].passed and o["forward.train.2d"].passed
    assert not o["forward.train.4d"].passed


def test_the_structure_check_lists_every_problem(grade):
    o = _outcomes(grade(CORPUS / "mistake_random_gamma.py"))["structure.4d"]
    assert "self.gamma does not start at 1" in o.message and "self.moving_var does not start at 1" in o.message
    o = _outcomes(grade(CORPUS / "mistake_running_none_init.py"))["structure.2d"]
    assert "self.moving_mean starts as None" in o.message and "self.moving_var starts as None" in o.message


def test_numpy_on_a_tensor_that_requires_grad_fails_with_its_own_diagnosis(grade):
    o = _outcomes(grade(CORPUS / "mistake_numpy_on_tensor.py"))
    assert [d.code for d in o["forward.train.4d"].diagnoses] == ["numpy_on_tensor"]
    assert "requires grad" in o["forward.train.4d"].message
    assert o["eval.forward"].passed  # under no_grad the input does not require grad, as in a network


def test_a_student_function_named_like_torchs_is_the_students_code(grade, tmp_path):
    assert _outcomes(grade(CORPUS / "correct_autograd_function.py"))["originality.no_builtin_norm"].passed
    # the same Function calling torch's batch_norm inside is caught, whatever its name
    src = (CORPUS / "correct_autograd_function.py").read_text().replace(
        "        mu = x.mean(dim=dims, keepdim=True)\n",
        "        torch.nn.functional.batch_norm(x, None, None, training=True)\n"
        "        mu = x.mean(dim=dims, keepdim=True)\n")
    o = _outcomes(grade(write(tmp_path, "sub.py", src)))["originality.no_builtin_norm"]
    assert not o.passed and "batch_norm" in o.message


def test_the_grad_mode_note_says_what_happens_and_quotes_no_switch_the_textbook_lacks(grade):
    o = _outcomes(grade(CORPUS / "mistake_grad_mode_only.py"))["advice.grad_mode"]
    hint = o.diagnosis.hint["en"]
    assert "torch.no_grad()" in hint and "update" in hint
    assert "or not self.training" not in hint and "or not self.training" not in o.diagnosis.hint["zh"]
