# corpus: a correct layer on the student's own torch.autograd.Function named BatchNormFunction,
# with a hand-written backward (must not be mistaken for torch's batch norm)
# expect: full
# notes: advice.buffers=not_buffers
import torch
from torch import nn


class BatchNormFunction(torch.autograd.Function):
    """y = gamma * (x - mu) / sqrt(var + eps) + beta, with the textbook backward."""

    @staticmethod
    def forward(ctx, x, gamma, beta, dims, eps):
        mu = x.mean(dim=dims, keepdim=True)
        xc = x - mu
        var = (xc * xc).mean(dim=dims, keepdim=True)
        inv_std = 1.0 / torch.sqrt(var + eps)
        x_hat = xc * inv_std
        ctx.save_for_backward(x_hat, inv_std, gamma)
        ctx.dims = dims
        return gamma * x_hat + beta, mu, var

    @staticmethod
    def backward(ctx, dy, _dmu, _dvar):
        x_hat, inv_std, gamma = ctx.saved_tensors
        dims = ctx.dims
        dgamma = (dy * x_hat).sum(dim=dims, keepdim=True)
        dbeta = dy.sum(dim=dims, keepdim=True)
        dx_hat = dy * gamma
        # the three terms: direct, through the mean, through the variance
        dx = inv_std * (dx_hat - dx_hat.mean(dim=dims, keepdim=True)
                        - x_hat * (dx_hat * x_hat).mean(dim=dims, keepdim=True))
        return dx, dgamma, dbeta, None, None


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
        if self.moving_mean.device != X.device:
            self.moving_mean = self.moving_mean.to(X.device)
            self.moving_var = self.moving_var.to(X.device)
        dims = (0,) if X.dim() == 2 else (0, 2, 3)
        if not self.training or not torch.is_grad_enabled():
            return self.gamma * (X - self.moving_mean) / torch.sqrt(self.moving_var + self.eps) + self.beta
        Y, mu, var = BatchNormFunction.apply(X, self.gamma, self.beta, dims, self.eps)
        m = self.momentum
        self.moving_mean = m * self.moving_mean + (1.0 - m) * mu.detach()
        self.moving_var = m * self.moving_var + (1.0 - m) * var.detach()
        return Y
