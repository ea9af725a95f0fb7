# corpus: updates the running stats whenever grad is enabled, also under model.eval()
# mistake: eval_updates_with_grad (a note: the course evaluates under no_grad; rubric grad_mode_only: costs makes it cost eval.frozen)
# expect: full
# notes: advice.buffers=not_buffers advice.grad_mode=eval_updates_with_grad
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
        if not torch.is_grad_enabled() or not self.training:
            X_hat = (X - self.moving_mean) / torch.sqrt(self.moving_var + self.eps)
        else:
            if X.dim() == 2:
                var, mean = torch.var_mean(X, dim=0, correction=0, keepdim=True)
            else:
                var, mean = torch.var_mean(X, dim=(0, 2, 3), correction=0, keepdim=True)
            X_hat = (X - mean) / torch.sqrt(var + self.eps)
        if torch.is_grad_enabled():
            dims = 0 if X.dim() == 2 else (0, 2, 3)
            var, mean = torch.var_mean(X.detach(), dim=dims, correction=0, keepdim=True)
            m = self.momentum
            self.moving_mean = m * self.moving_mean + (1 - m) * mean
            self.moving_var = m * self.moving_var + (1 - m) * var
        Y = self.gamma * X_hat + self.beta
        return Y
