# corpus: in training, updates the running statistics first and normalises with them
# expect: fail forward.train.4d=running_in_train_norm forward.train.2d=running_in_train_norm hyperparams.eps=running_in_train_norm gradients=running_in_train_norm integration.lenet=-
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

    def forward(self, X):
        if self.training and torch.is_grad_enabled():
            dims = 0 if X.dim() == 2 else (0, 2, 3)
            batch_mean = X.mean(dim=dims, keepdim=True)
            batch_var = X.var(dim=dims, unbiased=False, keepdim=True)
            # smooth the estimate with the history before using it
            self.moving_mean = self.momentum * self.moving_mean.detach() + (1 - self.momentum) * batch_mean
            self.moving_var = self.momentum * self.moving_var.detach() + (1 - self.momentum) * batch_var
            mean, var = self.moving_mean, self.moving_var
            self.moving_mean = self.moving_mean.detach()
            self.moving_var = self.moving_var.detach()
        else:
            mean, var = self.moving_mean, self.moving_var
        return self.gamma * (X - mean) / torch.sqrt(var + self.eps) + self.beta
