"""notebook.check(BatchNorm2d) in a real IPython shell: the class and the helper it uses are
defined in separate cells, gathered from the cells' source, graded in the sandbox, and the
report is displayed inline."""
import os
import shutil
import sys

import pytest

from conftest import CORPUS

IPython = pytest.importorskip("IPython")

HELPER_CELL = '''
import torch
from torch import nn

def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    if not torch.is_grad_enabled():
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        if len(X.shape) == 2:
            mean = X.mean(dim=0)
            var = ((X - mean) ** 2).mean(dim=0)
        else:
            mean = X.mean(dim=(0, 2, 3), keepdim=True)
            var = ((X - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        X_hat = (X - mean) / torch.sqrt(var + EPS_SHIFT + eps)
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta
    return Y, moving_mean.data, moving_var.data
'''

CLASS_CELL = '''
class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)
        self.momentum, self.eps = momentum, eps

    def forward(self, X):
        if self.moving_mean.device != X.device:
            self.moving_mean = self.moving_mean.to(X.device)
            self.moving_var = self.moving_var.to(X.device)
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma, self.beta, self.moving_mean, self.moving_var, eps=self.eps, momentum=self.momentum)
        return Y

print("a cell that trains would run here")
'''


@pytest.fixture()
def shell(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    sh = InteractiveShell.instance()
    sh.user_ns["SHOWN"] = shown
    yield sh, shown
    InteractiveShell.clear_instance()


def _run(sh, code):
    r = sh.run_cell(code, store_history=True)
    assert r.error_in_exec is None and r.error_before_exec is None, (r.error_in_exec, r.error_before_exec)
    return r.result


@pytest.mark.parametrize("shift, full", [("0.0", True), ("1e-3", False)])
def test_check_grades_the_class_from_its_cells_and_shows_the_report(shell, shift, full):
    sh, shown = shell
    _run(sh, f"EPS_SHIFT = {shift}\n")
    _run(sh, HELPER_CELL)
    _run(sh, CLASS_CELL)
    checked = _run(sh, "from grader import notebook\nnotebook.check(BatchNorm2d, lang='en')\n")
    r = checked.result
    assert r.status.value == "graded", r.reason
    assert (r.score == r.max_score) == full, [(s.outcome.check_id, s.outcome.message) for s in r.checks if not s.passed]
    assert r.submission == "notebook.py" and len(shown) == 1
    frame = shown[0].data
    assert frame.startswith('<iframe class="bn-grade-report" srcdoc="&lt;!DOCTYPE html&gt;')
    assert "<script" not in frame and f"{r.score:g} / {r.max_score:g}" in frame
    # the cell's other code was sliced away: it never ran in the sandbox
    assert "a cell that trains" not in r.student_output


def test_class_from_a_plain_module_and_a_non_class(tmp_path, monkeypatch):
    import importlib.util
    from grader import notebook
    spec = importlib.util.spec_from_file_location("mod_reversed", CORPUS / "mistake_reversed_momentum.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    checked = notebook.check(mod.BatchNorm2d, lang="en", show=False)
    assert "running_stats" in {s.outcome.check_id for s in checked.result.checks if not s.passed}
    assert "momentum convention reversed" in checked.html
    with pytest.raises(notebook.NotebookError, match="takes the class itself"):
        notebook.check(mod.BatchNorm2d(3, 4), show=False)
    assert not list(tmp_path.iterdir())  # nothing written here
    assert os.path.exists(CORPUS / "mistake_reversed_momentum.py")


def _module(path, name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _verdicts(result):
    return {s.outcome.check_id: (s.score, s.max_score, [d.code for d in s.outcome.diagnoses]) for s in result.checks}


def test_the_student_edition_checks_in_the_notebook_against_a_pack(tmp_path, monkeypatch, capsys):
    from conftest import ROOT
    from grader import notebook
    from grader.checks import oracle
    template_pack = ROOT / "student_template" / "batchnorm.bnpack"
    wrong = _module(CORPUS / "mistake_reversed_momentum.py", "mod_reversed_pack")
    full = notebook.check(wrong.BatchNorm2d, lang="en", show=False)  # the full edition computes
    assert full.result.status.value == "graded", full.result.reason
    # the student edition: the module that computes expected values is not installed
    monkeypatch.setitem(sys.modules, "grader.checks.computed", None)
    with pytest.raises(oracle.StudentEdition):
        oracle.computed()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(notebook.NotebookError, match=r'notebook.check\(BatchNorm2d, pack="batchnorm.bnpack"\)'):
        notebook.check(wrong.BatchNorm2d, show=False)
    with pytest.raises(notebook.NotebookError, match="no such pack file"):
        notebook.check(wrong.BatchNorm2d, pack=tmp_path / "missing.bnpack", show=False)
    student = notebook.check(wrong.BatchNorm2d, pack=template_pack, lang="en", show=False)
    assert student.result.status.value == "graded", student.result.reason
    assert not [why for _, why in student.result.not_run if why.startswith("cannot be checked")]
    # the same verdicts as the full edition, without computing any expected value
    assert _verdicts(student.result) == _verdicts(full.result)
    assert (student.score, student.max_score) == (full.score, full.max_score) and student.score < student.max_score
    assert "momentum convention reversed" in student.html
    # the template ships the pack next to the notebook: found without pack=
    shutil.copyfile(template_pack, tmp_path / "batchnorm.bnpack")
    right = _module(CORPUS / "correct_kind_string.py", "mod_right_pack")
    found = notebook.check(right.BatchNorm2d, lang="en", show=False)
    assert "checking against batchnorm.bnpack" in capsys.readouterr().err
    assert found.result.status.value == "graded" and found.score == found.max_score > 0
