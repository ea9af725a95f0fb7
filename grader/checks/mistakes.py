"""Known mistakes: the description of the formula variants and the catalogue of names and hints
(parent process; both editions: nothing here computes a formula, checks/variants.py does).

Variant() with no arguments describes the course's formula (tests hold its computation equal to
reference/); each field is one way to get it wrong. A catalogue entry names a one-field variant (the search in
checks/search.py combines them) or a finding made otherwise (state, exceptions, probes), with a
title and a hint in English and Chinese. Tests hold every variant far from the course's formula
on the inputs of checks/inputs.py, for many seeds.
"""
from dataclasses import dataclass, replace

SLIDE_NORM = "x̂ = (x − μ) / sqrt(σ² + ε),  y = γ·x̂ + β"
SLIDE_VAR = "σ² = (1/B) Σ (x − μ)²"
SLIDE_EMA = "v_t = decay · v_{t−1} + (1 − decay) · y_t"


# symbolic reduction axes of the catalogue, per input rank (explicit tuples are searched too)
NAMED_AXES = {
    "sample": {4: (1, 2, 3), 2: (1,)},
    "instance": {4: (2, 3)},
    "batch": {4: (0,), 2: (0,)},
    "global": {4: (0, 1, 2, 3), 2: (0, 1)},
    "channels_last": {4: (0, 1, 2), 2: (0,)},
}


@dataclass(frozen=True)
class Variant:
    axes: object = None  # None: the course's dims; a NAMED_AXES key; or explicit dims for the input's rank
    keepdim: bool = True  # False: the reduced statistic broadcasts from the right (along W)
    var_direct: bool = False  # without keepdim: x.var(dims) (each value's own mean), not mean((x − μ)²)
    unbiased_norm: bool = False
    eps_mode: str = "inside"  # inside | outside | fixed (1e-5 whatever the argument) | none
    affine: str = "normal"  # normal | ignored | swapped | beta_times | train_only | eval_only | last_axis
    detach_stats: object = False  # True (both) | "mean" | "var": a term missing from the gradient
    train_stats: str = "batch"  # batch | updated_running (normalised with the freshly updated running stats)
    update: str = "decay"  # decay | reversed | fixed (0.9) | fixed_reversed (0.1) | overwrite | none
    running_var: str = "biased"  # biased | unbiased | std
    running_init: str = "template"  # template | first_batch (overwritten by step 1) | var_zero
    eval_stats: str = "running"  # running | batch | blended
    update_in_eval: bool = False
    eval_var_as_std: bool = False  # eval divides by the stored statistic as if it were a std


@dataclass(frozen=True)
class Mistake:
    code: str
    variant: Variant | None  # the course's formula with this one mistake; None: found otherwise
    title: dict
    hint: dict


def _m(code, variant, title_en, title_zh, hint_en, hint_zh):
    return Mistake(code, variant, {"en": title_en, "zh": title_zh}, {"en": hint_en, "zh": hint_zh})


def delta(variant: Variant) -> dict:
    """The fields in which a variant differs from the course's formula."""
    return {f: getattr(variant, f) for f in Variant.__dataclass_fields__ if getattr(variant, f) != getattr(V, f)}


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
    _m("no_keepdim", replace(V, keepdim=False),
       "per-channel statistics without keepdim broadcast along the last axis", "求统计量时未用 keepdim，(C,) 结果沿最后一维广播",
       "mean(dim=(0, 2, 3)) has shape (C,), which lines up with W, not C. Use keepdim=True so it stays (1, C, 1, 1).",
       "mean(dim=(0, 2, 3)) 的形状是 (C,)，会与 W 而不是 C 对齐。请使用 keepdim=True，保持 (1, C, 1, 1)。"),
    _m("wrong_axes_batch", replace(V, axes="batch"),
       "statistics over the batch axis only: one mean per channel and position", "只在 batch 维上求统计量：每个通道、每个位置各一个均值",
       "For (N, C, H, W) average over the batch and the spatial axes: dim=(0, 2, 3), keepdim=True gives (1, C, 1, 1); dim=0 alone gives (1, C, H, W).",
       "对 (N, C, H, W) 要在 batch 和空间维上求均值：dim=(0, 2, 3)、keepdim=True 得到 (1, C, 1, 1)；只用 dim=0 得到的是 (1, C, H, W)。"),
    _m("wrong_axes_global", replace(V, axes="global"),
       "one mean and variance for the whole tensor", "整个张量只求了一个均值和方差",
       "BatchNorm keeps one mean and one variance per channel: leave the channel axis (dim 1) out of the reduction.",
       "BN 对每个通道各求一个均值和方差：求统计量时不要包含通道维（dim 1）。"),
    _m("wrong_axes_channels_last", replace(V, axes="channels_last"),
       "statistics over (N, H, W) as if channels were the last axis", "把最后一维当成通道，在 (N, H, W) 上求统计量",
       "PyTorch's images are (N, C, H, W): the channel axis is dim 1, so reduce over dim=(0, 2, 3), not (0, 1, 2).",
       "PyTorch 的图像是 (N, C, H, W)：通道是第 1 维，应在 dim=(0, 2, 3) 上求，而不是 (0, 1, 2)。"),
    _m("wrong_axes_dims", None,
       "statistics over dims {dims} instead of the batch{spatial}", "在维度 {dims} 上求统计量，而不是 batch{spatial_zh}",
       "Per-channel statistics reduce over {want} with keepdim=True.", "每个通道的统计量应在 {want} 上求，并使用 keepdim=True。"),
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
    _m("beta_multiplied", replace(V, affine="beta_times"),
       "beta multiplied instead of added", "β 被乘上而不是加上",
       f"beta is a shift: y = γ·x̂ + β. {SLIDE_NORM}.", f"β 是平移量：y = γ·x̂ + β。{SLIDE_NORM}。"),
    _m("affine_eval_only", replace(V, affine="eval_only"),
       "gamma and beta applied only in eval mode", "只在评估模式下使用了 γ 和 β",
       "Apply y = γ·x̂ + β in training mode too: that is where gamma and beta learn.",
       "训练模式下也要计算 y = γ·x̂ + β：γ 和 β 正是在训练中学习的。"),
    _m("affine_train_only", replace(V, affine="train_only"),
       "gamma and beta applied only in training mode", "只在训练模式下使用了 γ 和 β",
       "Apply y = γ·x̂ + β in eval mode too: the learned scale and shift are part of the layer.",
       "评估模式下也要计算 y = γ·x̂ + β：学到的缩放和平移是层的一部分。"),
    _m("affine_last_axis", replace(V, affine="last_axis"),
       "(C,)-shaped gamma/beta broadcast along the last axis (W)", "(C,) 形状的 γ/β 沿最后一维（W）广播",
       "A (C,) tensor lines up with the last axis. Shape gamma and beta as (1, C, 1, 1) for 4-D input and (1, C) for 2-D, as the template does.",
       "(C,) 形状的张量会与最后一维对齐。请按模板把 γ 和 β 设为 (1, C, 1, 1)（4 维输入）或 (1, C)（2 维输入）。"),
    _m("running_in_train_norm", replace(V, train_stats="updated_running"),
       "training output normalised with the running statistics", "训练模式下用滑动统计量做归一化",
       "In training mode normalise with this batch's mean and variance; the running statistics are only updated there, and used in eval mode.",
       "训练模式下用当前 batch 的均值和方差归一化；滑动统计量在训练时只做更新，在评估模式下才使用。"),
    _m("eval_blended", replace(V, eval_stats="blended"),
       "eval mode blends the batch's statistics into the running ones", "评估模式把 batch 统计量混入了滑动统计量",
       "In eval mode normalise with moving_mean and moving_var exactly as they are; do not mix in the batch's statistics.",
       "评估模式下直接用 moving_mean 和 moving_var 归一化，不要混入当前 batch 的统计量。"),
    _m("eval_var_as_std", replace(V, eval_var_as_std=True),
       "eval mode divides by the stored statistic as if it were a standard deviation", "评估模式把存储的统计量当作标准差来除",
       f"moving_var holds a variance: eval divides by sqrt(moving_var + ε), as training does. {SLIDE_NORM}.",
       f"moving_var 存的是方差：评估时应除以 sqrt(moving_var + ε)，与训练时一致。{SLIDE_NORM}。"),
    _m("stats_detached", replace(V, detach_stats=True),
       "batch statistics cut out of the autograd graph", "batch 统计量被从计算图中切断",
       "The gradient flows through μ and σ² too. Detach only what you store in the running statistics, not the mean and variance used to normalise.",
       "梯度也要经过 μ 和 σ²。只在更新滑动平均时 detach，归一化用的均值和方差不要 detach。"),
    _m("grad_missing_mean_term", replace(V, detach_stats="mean"),
       "the gradient through the batch mean is missing", "缺少经过 batch 均值的梯度项",
       "μ depends on every x: dx gets −mean(dx̂)/sqrt(σ²+ε) from it. Let autograd differentiate through the mean, or add that term to your backward.",
       "μ 依赖于每个 x：dx 中有来自它的 −mean(dx̂)/sqrt(σ²+ε) 项。请让 autograd 对均值求导，或在手写 backward 中补上这一项。"),
    _m("grad_missing_var_term", replace(V, detach_stats="var"),
       "the gradient through the batch variance is missing", "缺少经过 batch 方差的梯度项",
       "σ² depends on every x: dx gets −x̂·mean(dx̂·x̂)/sqrt(σ²+ε) from it. Let autograd differentiate through the variance, or add that term to your backward.",
       "σ² 依赖于每个 x：dx 中有来自它的 −x̂·mean(dx̂·x̂)/sqrt(σ²+ε) 项。请让 autograd 对方差求导，或在手写 backward 中补上这一项。"),
    _m("reversed_momentum", replace(V, update="reversed"),
       "momentum convention reversed", "动量（decay）用反了",
       f"In this course momentum is a decay: {SLIDE_EMA}, i.e. moving = momentum·moving + (1 − momentum)·batch. torch.nn uses the opposite convention.",
       f"本课程中 momentum 是衰减率：{SLIDE_EMA}，即 moving = momentum·moving + (1 − momentum)·batch。torch.nn 的约定正好相反。"),
    _m("momentum_ignored", replace(V, update="fixed"),
       "the momentum argument is ignored (a fixed 0.9 is used)", "忽略了 momentum 参数（固定使用 0.9）",
       "Use self.momentum, the value passed to __init__, in the moving-average update.", "滑动平均更新中请使用 __init__ 传入的 self.momentum。"),
    _m("momentum_ignored_reversed", replace(V, update="fixed_reversed"),
       "the momentum argument is ignored (a fixed 0.1 weight on the old value)", "忽略了 momentum 参数（旧值权重固定为 0.1）",
       f"Use self.momentum as the decay: {SLIDE_EMA}. A hard-coded 0.1 is torch.nn's default in the opposite convention.",
       f"把 self.momentum 当作衰减率：{SLIDE_EMA}。写死的 0.1 是 torch.nn 相反约定下的默认值。"),
    _m("running_init_first_batch", replace(V, running_init="first_batch"),
       "running statistics set from the first batch instead of starting at 0 and 1", "滑动统计量由第一个 batch 直接赋值，而不是从 0 和 1 开始",
       "Start moving_mean at zeros and moving_var at ones in __init__ and average from the first step on: " + SLIDE_EMA + ".",
       "在 __init__ 中把 moving_mean 初始化为 0、moving_var 初始化为 1，并从第一步起做滑动平均：" + SLIDE_EMA + "。"),
    _m("running_var_starts_at_zero", replace(V, running_init="var_zero"),
       "moving_var starts at 0", "moving_var 从 0 开始",
       "moving_var starts at ones, as in the template: a variance of 0 would divide by sqrt(ε) in eval mode.",
       "按模板 moving_var 初始化为 1：方差为 0 时评估模式会除以 sqrt(ε)。"),
    _m("unbiased_running_var", replace(V, running_var="unbiased"),
       "unbiased variance kept as the running variance", "滑动方差使用了无偏方差",
       f"This course keeps the biased batch variance in moving_var: {SLIDE_VAR}.",
       f"本课程在 moving_var 中保存有偏的 batch 方差：{SLIDE_VAR}。"),
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
    _m("numpy_on_tensor", None,
       "numpy functions on tensors break autograd", "对张量使用 numpy 函数破坏了自动求导",
       "Inside a network the input requires grad, and .numpy()/np.* leave the autograd graph. Use the torch functions (torch.mean, torch.sqrt, ...).",
       "在网络中输入需要梯度，.numpy()/np.* 会脱离计算图。请使用 torch 的函数（torch.mean、torch.sqrt 等）。"),
    _m("only_4d", None,
       "forward handles 4-D input only", "forward 只处理了 4 维输入",
       "num_dims=2 layers get (N, C) input: reduce over dim=0 there (keepdim=True), over dim=(0, 2, 3) for (N, C, H, W).",
       "num_dims=2 的层输入是 (N, C)：此时在 dim=0 上求（keepdim=True）；(N, C, H, W) 在 dim=(0, 2, 3) 上求。"),
    _m("only_2d", None,
       "forward handles 2-D input only", "forward 只处理了 2 维输入",
       "num_dims=4 layers get (N, C, H, W) input: reduce over dim=(0, 2, 3) with keepdim=True there.",
       "num_dims=4 的层输入是 (N, C, H, W)：此时在 dim=(0, 2, 3) 上求，并使用 keepdim=True。"),
    _m("state_shape_from_input", None,
       "the running statistics take their shape from the first input", "滑动统计量的形状取决于第一个输入",
       "Per-channel statistics have C values whatever the input's size: reduce over dim=(0, 2, 3) with keepdim=True, so moving_mean stays (1, C, 1, 1).",
       "每个通道的统计量与输入大小无关，只有 C 个值：在 dim=(0, 2, 3) 上求并使用 keepdim=True，moving_mean 保持 (1, C, 1, 1)。"),
    _m("training_argument", None,
       "a training argument of forward overrides model.eval()", "forward 的 training 参数覆盖了 model.eval()",
       "model(x) never passes your forward's training argument, so its default wins in eval mode too. Switch on self.training (set by model.train()/model.eval()).",
       "model(x) 不会传入 forward 的 training 参数，评估模式下也用的是默认值。请根据 self.training（由 model.train()/model.eval() 设置）切换。"),
    _m("eval_updates_with_grad", None,
       "model.eval() with grad enabled updates the running statistics", "梯度开启时 model.eval() 仍会更新滑动统计量",
       "The grader evaluates under torch.no_grad(), where your layer is right. Without no_grad, an eval pass would update moving_mean/moving_var: update them only when self.training is true.",
       "评分时评估在 torch.no_grad() 下进行，此时你的层是对的。若没有 no_grad，评估会更新 moving_mean/moving_var：只在 self.training 为真时更新。"),
    _m("grad_mode_switching", None,
       "eval behaviour switches on grad mode", "根据梯度模式切换评估行为",
       "Under model.train() with torch.no_grad() your layer uses the running statistics: that is the textbook's switch on torch.is_grad_enabled(). It grades fine; torch.nn switches on self.training alone.",
       "在 model.train() 且 torch.no_grad() 下你的层使用了滑动统计量：这是教材按 torch.is_grad_enabled() 切换的写法，评分没有问题；torch.nn 只看 self.training。"),
    _m("ignores_training_flag", None,
       "model.eval() is ignored while grad is enabled", "梯度开启时忽略了 model.eval()",
       "Your layer switches on torch.is_grad_enabled() alone, as the textbook does. The grader (like the course's training loop) evaluates with model.eval() under torch.no_grad(), where this is right. Without no_grad, an eval pass would normalise with the batch's statistics and update moving_mean/moving_var. To make model.eval() enough on its own, also test self.training.",
       "你的层只根据 torch.is_grad_enabled() 切换，与教材相同。评分器（和课程的训练循环一样）在 torch.no_grad() 下用 model.eval() 评估，此时是正确的。若没有 no_grad，评估会用 batch 统计量归一化并更新 moving_mean/moving_var。若希望仅靠 model.eval() 就能切换，请同时判断 self.training。"),
]}


# the formulas live in checks/variants.py (full edition only: the student edition must not hold a
# working BatchNorm); the old names stay reachable here for the tests and the full edition
_FORMULAS = ("dims_of", "train_forward", "eval_forward", "running_start", "running_update")


def __getattr__(name):
    if name in _FORMULAS:
        from grader.checks import variants
        return getattr(variants, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
