# corpus: delegates to torch.nn.functional.batch_norm (imported under an alias) with converted momentum
# mistake: builtin_norm
# expect: fail forward.train.4d=- forward.train.2d=- hyperparams.eps=- running_stats=- hyperparams.momentum=- eval.forward=- eval.frozen=- gradients=- hygiene.input_unchanged=- hygiene.stats_detached=- integration.lenet=- originality.no_builtin_norm=builtin_norm
# notes: advice.buffers=not_buffers
import torch
from torch import nn
from torch.nn import functional as G


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
        training = self.training and torch.is_grad_enabled()
        # F.batch_norm wants 1-D stats; view() shares memory so the running
        # stats are updated in place. torch's momentum is (1 - our momentum).
        Y = G.batch_norm(X, self.moving_mean.view(C), self.moving_var.view(C),
                         self.gamma.view(C), self.beta.view(C),
                         training=training, momentum=1 - self.momentum, eps=self.eps)
        return Y
