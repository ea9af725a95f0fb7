# corpus: transposes to (C, -1) and uses .mean(1) per channel, then reshapes stats to broadcast
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
        C = X.shape[1]
        # shape that broadcasts against X: (1, C) or (1, C, 1, 1)
        bshape = [1, C] + [1] * (X.dim() - 2)
        if not torch.is_grad_enabled() or not self.training:
            mean, var = self.moving_mean, self.moving_var
        else:
            flat = X.transpose(0, 1).reshape(C, -1)      # (C, everything else)
            mu = flat.mean(1)
            sigma2 = ((flat - mu[:, None]) ** 2).mean(1)
            mean = mu.view(bshape)
            var = sigma2.view(bshape)
            self.moving_mean = (self.momentum * self.moving_mean
                                + (1 - self.momentum) * mean).detach()
            self.moving_var = (self.momentum * self.moving_var
                               + (1 - self.momentum) * var).detach()
        return self.gamma * (X - mean) / torch.sqrt(var + self.eps) + self.beta
