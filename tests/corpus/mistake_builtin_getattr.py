# corpus: reaches torch's batch norm kernel through getattr(torch, "batch_" + "norm") at runtime
# mistake: builtin_norm
# expect: fail forward.train.4d=- forward.train.2d=- hyperparams.eps=- running_stats=- hyperparams.momentum=- eval.forward=- eval.frozen=- gradients=- hygiene.input_unchanged=- hygiene.stats_detached=- integration.lenet=- originality.no_builtin_norm=builtin_norm
# notes: advice.buffers=not_buffers
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
        bn = getattr(torch, "batch_" + "norm")
        C = X.shape[1]
        training = self.training and torch.is_grad_enabled()
        # running stats are views of our own tensors, updated in place by the kernel
        Y = bn(X, self.gamma.view(C), self.beta.view(C),
               self.moving_mean.view(C), self.moving_var.view(C),
               training, 1 - self.momentum, self.eps, False)
        return Y
