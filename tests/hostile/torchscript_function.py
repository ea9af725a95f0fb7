# hostile: torch's kernel inside TorchScript compiled from a string, wrapped in an
# autograd.Function: scripted calls pass no torch-function mode and the graph holds only the
# Function's own node
# review: compiled
import torch
from torch import nn

_SRC = """
def bn(x, w, b, rm: Optional[Tensor], rv: Optional[Tensor], training: bool, momentum: float, eps: float):
    return torch.%s(x, w, b, rm, rv, training, momentum, eps, False)
""" % ("batch" + "_norm")
_cu = torch.jit.CompilationUnit(_SRC)  # <- compiled


class _Scripted(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, mean, var, training, momentum, eps):
        ctx.save_for_backward(x, gamma, beta)
        ctx.eps = eps
        return _cu.bn(x, gamma, beta, mean, var, training, momentum, eps)

    @staticmethod
    def backward(ctx, grad):
        x, gamma, beta = ctx.saved_tensors
        with torch.enable_grad():
            x, gamma, beta = (t.detach().requires_grad_() for t in (x, gamma, beta))
            y = _cu.bn(x, gamma, beta, None, None, True, 0.0, ctx.eps)
            dx, dg, db = torch.autograd.grad((y * grad).sum(), (x, gamma, beta))
        return dx, dg, db, None, None, None, None, None


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.register_buffer("moving_mean", torch.zeros(shape))
        self.register_buffer("moving_var", torch.ones(shape))
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        C = X.shape[1]
        training = self.training and torch.is_grad_enabled()
        return _Scripted.apply(X, self.gamma.view(C), self.beta.view(C), self.moving_mean.view(C),
                               self.moving_var.view(C), training, 1 - self.momentum, self.eps)
