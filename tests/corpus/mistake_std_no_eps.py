# corpus: divides by the std without eps and keeps a running std instead of a running variance
# expect: fail forward.train.4d=eps_missing forward.train.2d=eps_missing hyperparams.eps=eps_missing running_stats=std_in_running_var hyperparams.momentum=std_in_running_var eval.forward=eval_var_as_std+eps_missing gradients=eps_missing integration.lenet=-
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
        self.moving_var = torch.ones(shape)   # holds the std
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        dims = [0] if X.dim() == 2 else [0, 2, 3]
        if self.training and torch.is_grad_enabled():
            mean = X.mean(dims, keepdim=True)
            std = X.std(dims, keepdim=True, unbiased=False)
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * std.detach()
        else:
            mean, std = self.moving_mean, self.moving_var
        return self.gamma * ((X - mean) / std) + self.beta
