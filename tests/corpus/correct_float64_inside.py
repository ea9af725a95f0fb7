# corpus: computes the statistics in float64 for accuracy and casts the result back to X.dtype
# expect: full
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
        Xd = X.double()
        if not self.training or not torch.is_grad_enabled():
            mean = self.moving_mean.to(Xd)
            var = self.moving_var.to(Xd)
        else:
            dims = 0 if X.dim() == 2 else (0, 2, 3)
            mean = Xd.mean(dim=dims, keepdim=True)
            var = ((Xd - mean) ** 2).mean(dim=dims, keepdim=True)
            # keep running stats in the same dtype as before
            self.moving_mean = (self.momentum * self.moving_mean.double()
                                + (1 - self.momentum) * mean.detach()).to(self.moving_mean.dtype)
            self.moving_var = (self.momentum * self.moving_var.double()
                               + (1 - self.momentum) * var.detach()).to(self.moving_var.dtype)
        X_hat = (Xd - mean) / torch.sqrt(var + self.eps)
        Y = self.gamma.double() * X_hat + self.beta.double()
        return Y.to(X.dtype)
