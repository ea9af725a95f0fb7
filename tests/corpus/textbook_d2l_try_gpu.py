# corpus: the textbook's code with the device taken from d2l.try_gpu() at module level and used by the layer: d2l is really needed, so loading fails naming it and both lines
# expect: error
# reason: d2l is not installed where your code is graded
# reason: line 8 imports it, and line 12 uses d2l.try_gpu
import torch
from torch import nn
import matplotlib.pyplot as plt
from d2l import torch as d2l

# 书上说有 GPU 就用 GPU
# (the layer's running statistics are created on this device)
device = d2l.try_gpu()


def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum, is_training):
    if not torch.is_grad_enabled() or not is_training:
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        if X.dim() == 2:
            mean = X.mean(dim=0)
            var = ((X - mean) ** 2).mean(dim=0)
        else:
            mean = X.mean(dim=(0, 2, 3), keepdim=True)
            var = ((X - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        X_hat = (X - mean) / torch.sqrt(var + eps)
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    return gamma * X_hat + beta, moving_mean.data, moving_var.data


class BatchNorm(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape, device=device))
        self.beta = nn.Parameter(torch.zeros(shape, device=device))
        self.moving_mean = torch.zeros(shape, device=device)
        self.moving_var = torch.ones(shape, device=device)
        self.momentum, self.eps = momentum, eps

    def forward(self, X):
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma, self.beta, self.moving_mean, self.moving_var,
            self.eps, self.momentum, self.training)
        return Y


BatchNorm2d = BatchNorm

net = nn.Sequential(nn.Conv2d(1, 6, kernel_size=5), BatchNorm2d(6, 4), nn.Sigmoid(),
                    nn.AvgPool2d(2, 2), nn.Flatten(), nn.Linear(6 * 12 * 12, 10)).to(device)
train_iter, test_iter = d2l.load_data_fashion_mnist(256)
d2l.train_ch6(net, train_iter, test_iter, 5, 1.0, device)
plt.show()
