# corpus: forward sleeps forever
# expect: fail forward.train.4d=- forward.train.2d=- hyperparams.eps=- running_stats=- hyperparams.momentum=- eval.forward=- eval.frozen=- gradients=- hygiene.input_unchanged=- hygiene.stats_detached=- integration.lenet=-
import time

import torch
from torch import nn


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        if num_dims == 2:
            shape = (1, num_features)
        else:
            shape = (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        while True:
            time.sleep(1)
