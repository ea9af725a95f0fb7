# hostile: torch's Python decomposition of native_batch_norm (torch._decomp), looked up by a
# split name: built from ordinary ops, so the recorder sees only mean/var/rsqrt
# review: torch_internals
import torch
import torch._decomp.decompositions as decomp  # <- torch_internals
from torch import nn

_impl = getattr(decomp, "native_batch" + "_norm")  # <- torch_internals


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.register_buffer("moving_mean", torch.zeros(shape))
        self.register_buffer("moving_var", torch.ones(shape))
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        C = X.shape[1]
        training = self.training and torch.is_grad_enabled()
        if not training:
            return _impl(X, self.gamma.view(C), self.beta.view(C), self.moving_mean.view(C),
                         self.moving_var.view(C), False, 0.0, self.eps)[0]
        y, mean, rstd = _impl(X, self.gamma.view(C), self.beta.view(C), None, None, True, 0.0, self.eps)
        with torch.no_grad():
            shape = self.moving_mean.shape
            var = rstd ** -2 - self.eps
            self.moving_mean.mul_(self.momentum).add_((1 - self.momentum) * mean.reshape(shape))
            self.moving_var.mul_(self.momentum).add_((1 - self.momentum) * var.reshape(shape))
        return y
