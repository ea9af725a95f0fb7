# corpus: forward(X, training=True) decides the mode: model.eval() never reaches it
# expect: fail hyperparams.eps=training_argument+batch_stats_in_eval eval.forward=training_argument+batch_stats_in_eval eval.frozen=training_argument+running_updated_in_eval integration.lenet=-
# notes: advice.buffers=not_buffers
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

    def forward(self, X, training=True):
        if training:
            axes = (0,) if len(X.shape) == 2 else (0, 2, 3)
            mean = X.mean(axes, keepdim=True)
            var = X.var(axes, keepdim=True, unbiased=False)
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        else:
            mean, var = self.moving_mean, self.moving_var
        return self.gamma * (X - mean) / (var + self.eps).sqrt() + self.beta
