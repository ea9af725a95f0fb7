# corpus: two mistakes in different places: torch's momentum convention and gamma/beta swapped
# expect: fail forward.train.4d=gamma_beta_swapped forward.train.2d=gamma_beta_swapped hyperparams.eps=gamma_beta_swapped running_stats=reversed_momentum hyperparams.momentum=reversed_momentum eval.forward=gamma_beta_swapped gradients=gamma_beta_swapped integration.lenet=-
# notes: advice.buffers=not_buffers
import torch
from torch import nn


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super(BatchNorm2d, self).__init__()
        if num_dims == 4:
            shape = (1, num_features, 1, 1)
        else:
            shape = (1, num_features)
        self.weight = nn.Parameter(torch.ones(shape))   # gamma
        self.bias = nn.Parameter(torch.zeros(shape))    # beta
        self.running_mean = torch.zeros(shape)
        self.running_var = torch.ones(shape)
        self.momentum = momentum
        self.eps = eps

    def forward(self, x):
        if self.training:
            red = [0] if x.dim() == 2 else [0, 2, 3]
            mu = x.mean(red, keepdim=True)
            sigma2 = x.var(red, keepdim=True, unbiased=False)
            # like nn.BatchNorm2d: new = (1 - momentum) * old + momentum * batch
            self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mu.detach()
            self.running_var = (1 - self.momentum) * self.running_var + self.momentum * sigma2.detach()
        else:
            mu, sigma2 = self.running_mean, self.running_var
        x_norm = (x - mu) / torch.sqrt(sigma2 + self.eps)
        return self.bias * x_norm + self.weight
