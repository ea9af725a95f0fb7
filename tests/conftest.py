import dataclasses
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as grader/cli.py does, before torch loads
# Fork the sandbox zygote before any test computes with torch: a fork after torch has run a
# parallel op can deadlock the child (see grader/sandbox/zygote.py). Every test shares it.
from grader.sandbox import zygote  # noqa: E402

ZYGOTE = zygote.shared()

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"


@pytest.fixture(scope="session")
def rubric():
    from grader import rubric as rubric_mod
    from grader.grading import known_checks
    return rubric_mod.load(None, known_checks=known_checks())


@pytest.fixture(scope="session")
def quick_rubric(rubric):
    # the same rubric with short limits, so hanging submissions cost seconds, not minutes
    return dataclasses.replace(rubric, limits=dataclasses.replace(rubric.limits, load_seconds=3, call_seconds=3,
                                                                  total_seconds=30))


@pytest.fixture(scope="session")
def grade(quick_rubric):
    from grader.grading import grade_file

    def run(path, rubric=None):
        return grade_file(path, rubric or quick_rubric, ZYGOTE)
    return run


@pytest.fixture(scope="session")
def graded_once(grade):
    # a file's result with the default (quick) rubric, graded once per session: test_corpus
    # checks its verdict and test_pack compares the pack's verdict with the same result
    done = {}

    def get(path):
        if path not in done:
            done[path] = grade(path)
        return done[path]
    return get


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


TEMPLATE_OK = '''
import torch
from torch import nn

class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        {extra}
        dims = (0,) if X.dim() == 2 else (0, 2, 3)
        if self.training and torch.is_grad_enabled():
            mean = X.mean(dim=dims, keepdim=True)
            var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        else:
            mean, var = self.moving_mean, self.moving_var
        return self.gamma * (X - mean) / torch.sqrt(var + self.eps) + self.beta
'''


@pytest.fixture(scope="module")
def spawner():
    # a spawned-worker sandbox (the Windows/macOS path), forced on this machine
    from grader.sandbox import spawned
    s = spawned.Spawner()
    yield s
    s.close()
