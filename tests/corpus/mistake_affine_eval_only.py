# corpus: gamma and beta applied only in eval mode (the training branch returns x_hat)
# expect: fail forward.train.4d=affine_eval_only forward.train.2d=affine_eval_only hyperparams.eps=affine_eval_only gradients=affine_eval_only integration.lenet=-
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
        if not torch.is_grad_enabled() or not self.training:
            X_hat = (X - self.moving_mean) / torch.sqrt(self.moving_var + self.eps)
            return self.gamma * X_hat + self.beta
        dims = (0,) if X.dim() == 2 else (0, 2, 3)
        mean = X.mean(dim=dims, keepdim=True)
        var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)
        self.moving_mean = self.momentum * self.moving_mean + (1.0 - self.momentum) * mean.detach()
        self.moving_var = self.momentum * self.moving_var + (1.0 - self.momentum) * var.detach()
        return (X - mean) / torch.sqrt(var + self.eps)
