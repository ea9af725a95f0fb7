"""Known mistakes, each a runnable variant of the reference formulas (parent process).

A failed check replays its inputs through every variant that could explain it; a variant
whose output matches what the submission returned names the mistake. Variant() with no
arguments is the course's formula (tests hold it equal to reference/), and tests hold every
variant far from it on the inputs of checks/inputs.py, for many seeds.
"""
from dataclasses import dataclass, replace

import torch

from grader.checks.compare import close
from reference.batchnorm import count, reduce_dims

SLIDE_NORM = "x̂ = (x − μ) / sqrt(σ² + ε),  y = γ·x̂ + β"
SLIDE_VAR = "σ² = (1/B) Σ (x − μ)²"
SLIDE_EMA = "v_t = decay · v_{t−1} + (1 − decay) · y_t"


@dataclass(frozen=True)
class Variant:
    axes: str = "channel"  # channel | sample (layer-norm-like) | instance | no_keepdim
    unbiased_norm: bool = False
    eps_mode: str = "inside"  # inside | outside | fixed (1e-5 whatever the argument) | none
    affine: str = "normal"  # normal | ignored | swapped
    detach_stats: bool = False
    update: str = "decay"  # decay | reversed | fixed (0.9 whatever the argument) | overwrite | none
    running_var: str = "biased"  # biased | unbiased | std
    eval_stats: str = "running"  # running | batch
    update_in_eval: bool = False


def _stats(v: Variant, x):
    if x.dim() == 4 and v.axes in ("sample", "instance", "no_keepdim"):
        dims = {"sample": (1, 2, 3), "instance": (2, 3), "no_keepdim": (0, 2, 3)}[v.axes]
    else:
        dims = reduce_dims(x)
    keep = not (v.axes == "no_keepdim" and x.dim() == 4)
    if not keep and x.shape[3] != x.shape[1]:
        raise ValueError("the (C,) statistics do not broadcast against W")
    mean = x.mean(dim=dims, keepdim=keep)
    n = 1
    for d in dims:
        n *= x.shape[d]
    var = ((x - (mean if keep else mean.view(-1))) ** 2).sum(dim=dims, keepdim=keep) / n
    return mean, var, n


def _normalize(v: Variant, x, mean, var, gamma, beta, eps, n, unbiased):
    if unbiased:
        var = var * n / (n - 1)
    if v.eps_mode == "fixed":
        eps = 1e-5
    if v.eps_mode == "outside":
        xhat = (x - mean) / (torch.sqrt(var) + eps)
    elif v.eps_mode == "none":
        xhat = (x - mean) / torch.sqrt(var)
    else:
        xhat = (x - mean) / torch.sqrt(var + eps)
    if v.affine == "ignored":
        return xhat
    if v.affine == "swapped":
        return beta * xhat + gamma
    return gamma * xhat + beta


def train_forward(v: Variant, x, gamma, beta, eps):
    """y in training mode; gamma/beta shaped like the template's parameters."""
    mean, var, n = _stats(v, x)
    if v.detach_stats:
        mean, var = mean.detach(), var.detach()
    return _normalize(v, x, mean, var, gamma, beta, eps, n, v.unbiased_norm)


def eval_forward(v: Variant, x, gamma, beta, moving_mean, moving_var, eps, momentum):
    if v.eval_stats == "batch":
        return train_forward(v, x, gamma, beta, eps)
    if v.update_in_eval:
        # updated first, then used: the output already sees this batch
        shape = moving_mean.shape
        mm, mv = running_update(v, moving_mean.reshape(-1), moving_var.reshape(-1), x, momentum)
        moving_mean, moving_var = mm.view(shape), mv.view(shape)
    return _normalize(v, x, moving_mean, moving_var, gamma, beta, eps, 2, False)


def running_update(v: Variant, moving_mean, moving_var, x, momentum):
    """(moving_mean, moving_var) after one training step on x; (C,) tensors."""
    if v.update == "none":
        return moving_mean, moving_var
    dims = reduce_dims(x)
    n = count(x)
    mean = x.mean(dim=dims)
    var = ((x - x.mean(dim=dims, keepdim=True)) ** 2).sum(dim=dims) / n
    if v.running_var == "unbiased":
        var = var * n / (n - 1)
    elif v.running_var == "std":
        var = var.sqrt()
    m = 0.9 if v.update == "fixed" else momentum
    if v.update == "overwrite":
        return mean, var
    if v.update == "reversed":
        m = 1.0 - m
    return m * moving_mean + (1 - m) * mean, m * moving_var + (1 - m) * var


@dataclass(frozen=True)
class Mistake:
    code: str
    variant: Variant | None
    title: dict
    hint: dict


def _m(code, variant, title_en, title_zh, hint_en, hint_zh):
    return Mistake(code, variant, {"en": title_en, "zh": title_zh}, {"en": hint_en, "zh": hint_zh})


V = Variant()
CATALOGUE = {m.code: m for m in [
    _m("wrong_axes", replace(V, axes="sample"),
       "statistics over the wrong axes (per sample)", "在错误的维度上求统计量（按样本）",
       "BatchNorm averages each channel over the batch and the spatial axes: dim=(0, 2, 3) for (N, C, H, W), dim=0 for (N, C).",
       "BN 对每个通道在 batch 和空间维度上求均值与方差：(N, C, H, W) 用 dim=(0, 2, 3)，(N, C) 用 dim=0。"),
    _m("wrong_axes_instance", replace(V, axes="instance"),
       "statistics over the wrong axes (per sample and channel, like instance norm)", "在错误的维度上求统计量（按样本和通道，类似 Instance Norm）",
       "Include the batch axis: for (N, C, H, W) reduce over dim=(0, 2, 3), not (2, 3).",
       "要包含 batch 维：(N, C, H, W) 应在 dim=(0, 2, 3) 上求，而不是 (2, 3)。"),
    _m("no_keepdim", replace(V, axes="no_keepdim"),
       "per-channel statistics without keepdim broadcast along the last axis", "求统计量时未用 keepdim，(C,) 结果沿最后一维广播",
       "mean(dim=(0, 2, 3)) has shape (C,), which lines up with W, not C. Use keepdim=True so it stays (1, C, 1, 1).",
       "mean(dim=(0, 2, 3)) 的形状是 (C,)，会与 W 而不是 C 对齐。请使用 keepdim=True，保持 (1, C, 1, 1)。"),
    _m("unbiased_var_in_norm", replace(V, unbiased_norm=True),
       "unbiased variance used to normalise", "归一化时使用了无偏方差",
       f"The slides' σ² divides by the batch count B: {SLIDE_VAR}. Use var(unbiased=False) (or correction=0).",
       f"课件中的 σ² 除以 batch 大小 B：{SLIDE_VAR}。请使用 var(unbiased=False)（或 correction=0）。"),
    _m("eps_outside_sqrt", replace(V, eps_mode="outside"),
       "eps added outside the square root", "ε 加在了平方根外面",
       f"eps goes inside the square root: {SLIDE_NORM}.", f"ε 应在平方根内：{SLIDE_NORM}。"),
    _m("eps_missing", replace(V, eps_mode="none"),
       "eps left out", "漏掉了 ε",
       f"Add eps to the variance before the square root: {SLIDE_NORM}.", f"在开平方前给方差加上 ε：{SLIDE_NORM}。"),
    _m("eps_arg_ignored", replace(V, eps_mode="fixed"),
       "the eps argument is ignored (a fixed 1e-5 is used)", "忽略了 eps 参数（固定使用 1e-5）",
       "Use self.eps, the value passed to __init__, not a constant.", "请使用 __init__ 传入的 self.eps，而不是常数。"),
    _m("gamma_beta_ignored", replace(V, affine="ignored"),
       "gamma and beta are not applied", "没有使用 γ 和 β",
       f"Scale and shift the normalised value: {SLIDE_NORM}.", f"归一化后还要缩放和平移：{SLIDE_NORM}。"),
    _m("gamma_beta_swapped", replace(V, affine="swapped"),
       "gamma and beta swapped", "γ 与 β 用反了",
       "gamma multiplies x̂ and beta is added: y = γ·x̂ + β.", "γ 乘以 x̂，β 是加上的：y = γ·x̂ + β。"),
    _m("stats_detached", replace(V, detach_stats=True),
       "batch statistics cut out of the autograd graph", "batch 统计量被从计算图中切断",
       "The gradient flows through μ and σ² too. Detach only what you store in the running statistics, not the mean and variance used to normalise.",
       "梯度也要经过 μ 和 σ²。只在更新滑动平均时 detach，归一化用的均值和方差不要 detach。"),
    _m("reversed_momentum", replace(V, update="reversed"),
       "momentum convention reversed", "动量（decay）用反了",
       f"In this course momentum is a decay: {SLIDE_EMA}, i.e. moving = momentum·moving + (1 − momentum)·batch. torch.nn uses the opposite convention.",
       f"本课程中 momentum 是衰减率：{SLIDE_EMA}，即 moving = momentum·moving + (1 − momentum)·batch。torch.nn 的约定正好相反。"),
    _m("momentum_ignored", replace(V, update="fixed"),
       "the momentum argument is ignored (a fixed 0.9 is used)", "忽略了 momentum 参数（固定使用 0.9）",
       "Use self.momentum, the value passed to __init__, in the moving-average update.", "滑动平均更新中请使用 __init__ 传入的 self.momentum。"),
    _m("running_overwritten", replace(V, update="overwrite"),
       "running statistics overwritten by the last batch", "滑动统计量被最后一个 batch 直接覆盖",
       f"Average instead of replacing: {SLIDE_EMA}.", f"应做指数滑动平均而不是直接替换：{SLIDE_EMA}。"),
    _m("running_not_updated", replace(V, update="none"),
       "running statistics never updated", "滑动统计量从未更新",
       f"In training mode update moving_mean and moving_var after each batch: {SLIDE_EMA}. Store the result back on self.",
       f"训练模式下每个 batch 之后都要更新 moving_mean 和 moving_var：{SLIDE_EMA}，并把结果存回 self。"),
    _m("std_in_running_var", replace(V, running_var="std"),
       "standard deviation stored as the running variance", "滑动方差中存入的是标准差",
       "moving_var averages the variance σ², not σ.", "moving_var 平均的是方差 σ²，而不是标准差 σ。"),
    _m("batch_stats_in_eval", replace(V, eval_stats="batch"),
       "batch statistics used in eval mode", "评估模式下仍使用 batch 统计量",
       "In eval mode (not self.training, or grad disabled) normalise with moving_mean and moving_var; the slides' test phase uses the training set's μ and σ.",
       "评估模式（not self.training 或梯度关闭）下应使用 moving_mean 与 moving_var 归一化；课件中测试阶段使用训练集上估计的 μ 和 σ。"),
    _m("running_updated_in_eval", replace(V, update_in_eval=True),
       "running statistics updated in eval mode", "评估模式下更新了滑动统计量",
       "Update moving_mean and moving_var only in training mode; eval must leave them unchanged.",
       "只在训练模式下更新 moving_mean 和 moving_var；评估模式不能改变它们。"),
    # found from the module's state or an exception, not by replaying a formula
    _m("params_not_parameters", None,
       "gamma/beta are not registered nn.Parameters", "γ/β 不是注册的 nn.Parameter",
       "Wrap them in nn.Parameter so model.parameters() (and the optimiser) sees them.",
       "用 nn.Parameter 包装它们，这样 model.parameters()（以及优化器）才能看到它们。"),
    _m("wrong_param_shape", None,
       "gamma/beta/moving stats have the wrong shape", "γ/β/滑动统计量形状不对",
       "The template's shape is (1, C) for num_dims=2 and (1, C, 1, 1) for num_dims=4.",
       "模板中的形状：num_dims=2 时为 (1, C)，num_dims=4 时为 (1, C, 1, 1)。"),
    _m("wrong_init", None,
       "wrong initial values", "初始值不对",
       "gamma starts at ones, beta at zeros, moving_mean at zeros and moving_var at ones, as in the template.",
       "按模板：gamma 初始化为 1，beta 为 0，moving_mean 为 0，moving_var 为 1。"),
    _m("inplace_input", None,
       "the input tensor is modified in place", "原地修改了输入张量",
       "Write x_hat = (X - mean) / ... instead of X -= mean: the caller's tensor must stay as it was.",
       "写成 x_hat = (X - mean) / ...，不要写 X -= mean：调用者的张量必须保持不变。"),
    _m("stats_with_graph", None,
       "running statistics carry an autograd graph", "滑动统计量带有计算图",
       "Update the running statistics under torch.no_grad() or from mean.detach(): otherwise every step's graph is kept alive (memory grows) and backward may fail.",
       "在 torch.no_grad() 下或用 mean.detach() 更新滑动统计量；否则每一步的计算图都会保留（内存增长），backward 也可能出错。"),
    _m("stats_wrong_device", None,
       "running statistics stay on the CPU", "滑动统计量留在了 CPU 上",
       "Register moving_mean/moving_var with self.register_buffer(...) so model.to(device) moves them, or move them to X.device in forward.",
       "用 self.register_buffer(...) 注册 moving_mean/moving_var，使 model.to(device) 能移动它们，或在 forward 中移到 X.device。"),
    _m("wrong_dtype", None,
       "the output's dtype differs from the input's", "输出的 dtype 与输入不同",
       "Return the input's dtype: look for a .float()/.double() conversion, or parameters created in another "
       "dtype (torch.set_default_dtype, dtype= in torch.ones).",
       "输出应与输入 dtype 相同：检查是否有 .float()/.double() 转换，或参数是否以其他 dtype 创建"
       "（torch.set_default_dtype、torch.ones 的 dtype= 参数）。"),
    _m("builtin_norm", None,
       "torch's built-in normalisation used", "使用了 torch 内置的归一化",
       "Compute the mean, variance and normalisation yourself; nn.BatchNorm*, F.batch_norm, layer/instance/group norm are not allowed here.",
       "请自己计算均值、方差并归一化；本作业不允许使用 nn.BatchNorm*、F.batch_norm 以及 layer/instance/group norm。"),
    _m("fragile_variance", None,
       "variance as E[x²] − E[x]² loses precision", "用 E[x²] − E[x]² 计算方差会损失精度",
       "When the mean is large compared with the spread this subtracts two nearly equal numbers. Use ((x − μ)²).mean() or var(unbiased=False).",
       "当均值远大于波动时，这是两个几乎相等的数相减。请用 ((x − μ)²).mean() 或 var(unbiased=False)。"),
    _m("not_buffers", None,
       "running statistics are not registered buffers", "滑动统计量不是注册的 buffer",
       "Plain tensor attributes are missed by state_dict() and model.to(device). self.register_buffer('moving_mean', ...) fixes both.",
       "普通张量属性不会出现在 state_dict() 中，也不会随 model.to(device) 移动。用 self.register_buffer('moving_mean', ...) 可解决。"),
    _m("grad_mode_switching", None,
       "eval behaviour switches on grad mode", "根据梯度模式切换评估行为",
       "Under model.train() with torch.no_grad() your layer uses the running statistics. This is the textbook form and it grades fine, but torch.nn switches on self.training alone.",
       "在 model.train() 且 torch.no_grad() 下你的层使用了滑动统计量。这是教材写法，评分没有问题，但 torch.nn 只看 self.training。"),
    _m("ignores_training_flag", None,
       "model.eval() is ignored while grad is enabled", "梯度开启时忽略了 model.eval()",
       "Switch on `not self.training` too (the textbook uses `not torch.is_grad_enabled() or not self.training`): a validation pass after model.eval() without no_grad would use and update batch statistics.",
       "也要判断 `not self.training`（教材写法是 `not torch.is_grad_enabled() or not self.training`）：若 model.eval() 后没有 no_grad，验证时会使用并更新 batch 统计量。"),
]}


def diagnose(candidates, simulate, got, rtol, atol, max_tol_factor=10.0):
    """The first mistake code in candidates whose simulated output matches got, else None."""
    for code in candidates:
        m = CATALOGUE[code]
        try:
            expected = simulate(m.variant)
        except (ValueError, RuntimeError):
            continue  # this mistake could not even produce an output of this shape
        if isinstance(expected, tuple):
            if all(close(g, e, rtol * max_tol_factor, atol * max_tol_factor) for g, e in zip(got, expected)):
                return m
        elif close(got, expected, rtol * max_tol_factor, atol * max_tol_factor):
            return m
    return None
