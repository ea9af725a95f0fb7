# corpus: the d2l-zh textbook's batch_norm() and BatchNorm copied as they are (switch on grad mode alone, .data returned), the homework's momentum/eps passed through, d2l and matplotlib imported, the chapter's LeNet training and plots left at the bottom
# expect: full
# notes: advice.buffers=not_buffers advice.grad_mode=ignores_training_flag
from d2l import torch as d2l
import matplotlib.pyplot as plt
import torch
from torch import nn


def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    # 用 is_grad_enabled 区分训练模式和预测模式
    if not torch.is_grad_enabled():
        # 预测模式：用移动平均得到的均值和方差
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        assert len(X.shape) in (2, 4)
        if len(X.shape) == 2:
            # 全连接层：按特征维求均值和方差
            mean = X.mean(dim=0)
            var = ((X - mean) ** 2).mean(dim=0)
        else:
            # 卷积层：按通道求均值和方差，keepdim 保证能广播
            mean = X.mean(dim=(0, 2, 3), keepdim=True)
            var = ((X - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        # 训练模式：用当前批量的均值和方差做标准化
        X_hat = (X - mean) / torch.sqrt(var + eps)
        # 更新移动平均
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta  # 拉伸和偏移
    return Y, moving_mean.data, moving_var.data


class BatchNorm(nn.Module):
    # num_features：全连接层的输出个数或卷积层的输出通道数
    # num_dims：2 表示全连接层，4 表示卷积层
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        if num_dims == 2:
            shape = (1, num_features)
        else:
            shape = (1, num_features, 1, 1)
        # 参与求梯度和迭代的拉伸参数和偏移参数，分别初始化成 1 和 0
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        # 不参与求梯度和迭代的变量，全在内存上初始化成 0 和 1
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        # 如果 X 不在内存上，把 moving_mean 和 moving_var 复制到 X 所在的显存上
        if self.moving_mean.device != X.device:
            self.moving_mean = self.moving_mean.to(X.device)
            self.moving_var = self.moving_var.to(X.device)
        # 保存更新过的 moving_mean 和 moving_var
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma, self.beta, self.moving_mean,
            self.moving_var, eps=self.eps, momentum=self.momentum)
        return Y


# 作业要求的类名
class BatchNorm2d(BatchNorm):
    pass


# ---------------- 下面是书上 7.5.3 节的实验 ----------------
net = nn.Sequential(
    nn.Conv2d(1, 6, kernel_size=5), BatchNorm2d(6, num_dims=4), nn.Sigmoid(),
    nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Conv2d(6, 16, kernel_size=5), BatchNorm2d(16, num_dims=4), nn.Sigmoid(),
    nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
    nn.Linear(16 * 4 * 4, 120), BatchNorm2d(120, num_dims=2), nn.Sigmoid(),
    nn.Linear(120, 84), BatchNorm2d(84, num_dims=2), nn.Sigmoid(),
    nn.Linear(84, 10))

lr, num_epochs, batch_size = 1.0, 10, 256
train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size)
d2l.train_ch6(net, train_iter, test_iter, num_epochs, lr, d2l.try_gpu())
plt.show()

# 看看第一个批量规范化层学到的拉伸参数和偏移参数
print(net[1].gamma.reshape((-1,)), net[1].beta.reshape((-1,)))

# 和框架自带的实现比一下
net2 = nn.Sequential(
    nn.Conv2d(1, 6, kernel_size=5), nn.BatchNorm2d(6), nn.Sigmoid(),
    nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.Sigmoid(),
    nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
    nn.Linear(256, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
    nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(),
    nn.Linear(84, 10))
d2l.train_ch6(net2, train_iter, test_iter, num_epochs, lr, d2l.try_gpu())
plt.savefig("bn_curves.png")
