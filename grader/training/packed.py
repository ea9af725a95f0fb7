"""The training stage against a check pack (parent process; both editions, the student edition's
only way to train): the no-BN and reference-BN baselines come from the pack (grader/pack.py),
the student's LeNet-5 trains in the sandbox as in the full edition, and the grader measures its
trained state itself.

The measurement holds the student's trained gamma, beta and running statistics in FrozenNorm:
one scale and shift per channel from given statistics, the eval-mode formula every hint quotes.
It computes no batch statistic and updates nothing, so it is not a BatchNorm (the student edition
must not contain one); on the same state it gives the full edition's numbers.
"""
from __future__ import annotations

import torch
from torch import nn

from grader.training import data as data_mod
from grader.training.stage import RUN_FIELDS, Run, Stage


class FrozenNorm(nn.Module):
    """A trained norm layer's state, applied as it is (eval only)."""

    def __init__(self, num_features, num_dims, eps=1e-5):
        super().__init__()
        view = (1, num_features) + (1,) * (num_dims - 2)  # (1, C) or (1, C, 1, 1)
        # the roles the stage copies the trained state into, by the template's names
        self.gamma = nn.Parameter(torch.ones(num_features).view(view))
        self.beta = nn.Parameter(torch.zeros(num_features).view(view))
        self.register_buffer("moving_mean", torch.zeros(num_features).view(view))
        self.register_buffer("moving_var", torch.ones(num_features).view(view))
        self.eps = eps

    def forward(self, x):
        # the same operations, in the same order, as the full edition's measurement
        scale = torch.rsqrt(self.moving_var + self.eps) * self.gamma
        return x * scale + (self.beta - scale * self.moving_mean)


class PackStage(Stage):
    def __init__(self, cfg, dataset, cache_dir, progress, pack):
        super().__init__(cfg, dataset, cache_dir, progress)
        self.pack = pack
        if not pack.baselines:
            raise data_mod.DataError(f"{pack.path}: this pack holds no baseline training runs (it was made with "
                                     "--no-train): grade with --no-train")
        # the pack's runs for this device type; another type's where the pack has none (CPU and
        # GPU runs differ in the last digits, not in what is scored)
        self.baseline_device = self.device if self.device in pack.baselines else sorted(pack.baselines)[0]
        base = pack.baselines[self.baseline_device]
        mine = {k: getattr(cfg, k) for k in RUN_FIELDS}
        theirs = base.get("config", {})
        differ = sorted(k for k in RUN_FIELDS if k in theirs and theirs[k] != mine[k])
        if differ:
            raise data_mod.DataError(f"{pack.path}: its baselines were trained with another training configuration "
                                     f"({', '.join(f'{k}: {theirs[k]!r}, the rubric: {mine[k]!r}' for k in differ)})")
        self._base = base

    def key(self) -> str:
        return self._base.get("key", "")

    def info(self, runs: dict) -> dict:
        out = super().info(runs)
        # another device type's runs, or another copy of CIFAR-10 (torchvision's download against the
        # instructor's): the baselines still stand, the last digits differ; the results say which
        out["baselines_from"] = {"pack": self.pack.path, "sha256": self.pack.sha256, "device": self.baseline_device,
                                 "same_device": self.baseline_device == self.device,
                                 "same_data": self._base.get("data") == self.data.key}
        return out

    def baselines(self) -> dict:
        fields = set(Run.__dataclass_fields__)
        return {name: Run(**{**{k: v for k, v in run.items() if k in fields}, "cached": True})
                for name, run in self._base["runs"].items()}

    def baselines_cached(self) -> bool:
        return True  # they come with the pack

    def eval_norm(self, num_features, num_dims):
        return FrozenNorm(num_features, num_dims)
