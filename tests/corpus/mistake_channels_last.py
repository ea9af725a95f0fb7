# corpus: 4-D statistics reduced over (N, H, W) as if channels were last (TensorFlow habit)
# expect: fail forward.train.4d=wrong_axes_channels_last running_stats=wrong_axes_channels_last gradients=wrong_axes_channels_last integration.lenet=-
# notes: advice.buffers=not_buffers
import torch
import torch.nn as nn


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

    def _stats(self, X):
        if X.dim() == 2:
            return X.mean(0, keepdim=True), X.var(0, unbiased=False, keepdim=True)
        # NHWC: reduce everything but the last axis
        mean = X.mean(dim=(0, 1, 2))
        var = X.var(dim=(0, 1, 2), unbiased=False)
        return mean, var

    def forward(self, X):
        if not torch.is_grad_enabled() or not self.training:
            return self.gamma * (X - self.moving_mean) / torch.sqrt(self.moving_var + self.eps) + self.beta
        mean, var = self._stats(X)
        X_hat = (X - mean) / torch.sqrt(var + self.eps)
        self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
        self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        return self.gamma * X_hat + self.beta
