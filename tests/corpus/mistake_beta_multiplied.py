# corpus: y = gamma * x_hat * beta (beta multiplied instead of added)
# expect: fail forward.train.4d=beta_multiplied forward.train.2d=beta_multiplied hyperparams.eps=beta_multiplied eval.forward=beta_multiplied gradients=beta_multiplied integration.lenet=-
# notes: advice.buffers=not_buffers
import torch
from torch import nn


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        self.shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(self.shape))
        self.beta = nn.Parameter(torch.zeros(self.shape))
        self.moving_mean = torch.zeros(self.shape)
        self.moving_var = torch.ones(self.shape)
        self.momentum = momentum
        self.eps = eps

    def scale_and_shift(self, x_hat):
        return self.gamma * x_hat * self.beta

    def forward(self, X):
        if self.training and torch.is_grad_enabled():
            dims = list(range(X.dim()))
            dims.remove(1)
            var, mean = torch.var_mean(X, dim=dims, keepdim=True, correction=0)
            with torch.no_grad():
                self.moving_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)
                self.moving_var.mul_(self.momentum).add_((1 - self.momentum) * var)
        else:
            mean, var = self.moving_mean, self.moving_var
        return self.scale_and_shift((X - mean) / torch.sqrt(var + self.eps))
