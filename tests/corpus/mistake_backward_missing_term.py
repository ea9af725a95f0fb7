# corpus: a hand-written backward that forgets the gradient through the variance
# expect: fail gradients=grad_missing_var_term integration.lenet=-
# notes: advice.buffers=not_buffers
import torch
from torch import nn


class _BN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps):
        dims = (0,) if x.dim() == 2 else (0, 2, 3)
        mean = x.mean(dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dims, keepdim=True)
        istd = torch.rsqrt(var + eps)
        xhat = (x - mean) * istd
        ctx.save_for_backward(xhat, istd, gamma)
        ctx.dims = dims
        return gamma * xhat + beta, mean, var

    @staticmethod
    def backward(ctx, gy, gmean, gvar):
        xhat, istd, gamma = ctx.saved_tensors
        dims = ctx.dims
        gxhat = gy * gamma
        # d/dx of (x - mean) * istd, treating istd as a constant
        gx = istd * (gxhat - gxhat.mean(dims, keepdim=True))
        return gx, (gy * xhat).sum(dims, keepdim=True), gy.sum(dims, keepdim=True), None


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
        if not self.training or not torch.is_grad_enabled():
            return self.gamma * (X - self.moving_mean) * torch.rsqrt(self.moving_var + self.eps) + self.beta
        Y, mean, var = _BN.apply(X, self.gamma, self.beta, self.eps)
        self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
        self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        return Y
