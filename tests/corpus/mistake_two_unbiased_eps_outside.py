# corpus: two mistakes in one formula: unbiased batch variance AND eps outside the sqrt
# expect: fail forward.train.4d=unbiased_var_in_norm+eps_outside_sqrt forward.train.2d=unbiased_var_in_norm+eps_outside_sqrt hyperparams.eps=eps_outside_sqrt+unbiased_var_in_norm eval.forward=eps_outside_sqrt gradients=unbiased_var_in_norm+eps_outside_sqrt integration.lenet=-
# notes: advice.buffers=not_buffers
import torch
import torch.nn as nn


def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum, training):
    if not training:
        X_hat = (X - moving_mean) / (torch.sqrt(moving_var) + eps)
        return gamma * X_hat + beta, moving_mean, moving_var
    axes = 0 if X.ndim == 2 else [0, 2, 3]
    mean = torch.mean(X, dim=axes, keepdim=True)
    var = torch.var(X, dim=axes, keepdim=True)          # torch.var: unbiased by default
    X_hat = (X - mean) / (torch.sqrt(var) + eps)        # add eps to the std
    moving_mean = momentum * moving_mean + (1.0 - momentum) * mean.detach()
    moving_var = momentum * moving_var + (1.0 - momentum) * var.detach()
    return gamma * X_hat + beta, moving_mean, moving_var


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)
        self.momentum, self.eps = momentum, eps

    def forward(self, X):
        training = self.training and torch.is_grad_enabled()
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma, self.beta, self.moving_mean, self.moving_var, self.eps, self.momentum, training)
        return Y
