# 第九章作业：用 PyTorch 实现 Batch Normalization
# Ch. 9 homework: implement Batch Normalization in PyTorch.
#
# 约定 / Conventions (slides, ch. 9):
#   训练 / training:  mu, sigma^2 = per-channel batch mean and *biased* variance (divide by B)
#                     x_hat = (x - mu) / sqrt(sigma^2 + eps)      y = gamma * x_hat + beta
#   滑动平均 / moving averages (momentum is a decay):
#                     moving = momentum * moving + (1 - momentum) * batch_stat
#   测试 / eval:       use moving_mean and moving_var instead of the batch statistics
#
# 自查 / self-check:  bn-grade batchnorm.py --pack batchnorm.bnpack --no-train   (docs/student-edition.md)
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
        # TODO 实现BN
        return Y
