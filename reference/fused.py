"""The reference BatchNorm2d with a fast training step, for the training stage's baselines
(grader process, full edition only; never in the sandbox or the student edition).

The same formula as reference/batchnorm.py (biased batch variance, eps inside the sqrt, one
scale and shift per channel, moving statistics by decay), but a training step goes through
torch's fused batch-norm kernel: one autograd node instead of a dozen per layer (the four layers
of a LeNet-5 epoch on one CPU thread here: ~2 s instead of ~4.5 s). Kept apart from
batchnorm.py so that the course's reference stays the plain formula the checks replay, and can
itself be graded as a submission (a built-in kernel in it would be flagged).
tests/test_training.py holds the two paths equal in float64.
"""
import torch

from reference.batchnorm import BatchNorm2d, count, decay


def _fused_batch(x, gamma, beta, eps):
    # (y, mean, var) of a training step. The kernel keeps no running statistics (None, None);
    # the batch variance comes back from its 1/sqrt(var + eps), widened (float64 where the
    # device has it): within float32 rounding of var_mean's
    c = x.shape[1]
    y, mean, invstd = torch.native_batch_norm(x, gamma.reshape(c), beta.reshape(c), None, None, True, 0.0, eps)
    shape = (1, c) + (1,) * (x.dim() - 2)  # (1, C) or (1, C, 1, 1)
    with torch.no_grad():
        wide = torch.float32 if invstd.device.type == "mps" else torch.float64  # Apple's GPU has no float64
        var = (invstd.to(wide).pow(-2) - eps).clamp_(min=0).to(x.dtype)
    return y, mean.detach().view(shape), var.view(shape)


class FusedBatchNorm2d(BatchNorm2d):
    def forward(self, X):
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(X)  # eval: the plain formula on the moving statistics
        Y, mean, var = _fused_batch(X, self.gamma, self.beta, self.eps)
        with torch.no_grad():
            n = count(X)
            stored = var * n / (n - 1) if self.unbiased_running_var else var
            self.moving_mean.copy_(decay(self.moving_mean, mean, self.momentum))
            self.moving_var.copy_(decay(self.moving_var, stored, self.momentum))
        return Y
