"""Student-facing words of the report and terminal, in English and Chinese (parent process).
Check titles live in the rubric and diagnoses in checks/mistakes.py, both in the two languages."""
import locale
import os

TEXT = {
    "report": {"en": "BatchNorm homework report", "zh": "BatchNorm 作业评分报告"},
    "score": {"en": "Score", "zh": "得分"},
    "status": {"en": "Status", "zh": "状态"},
    "graded": {"en": "graded", "zh": "已评分"},
    "error": {"en": "could not be graded", "zh": "无法评分"},
    "timeout": {"en": "timed out", "zh": "超时"},
    "memory": {"en": "ran out of memory", "zh": "内存超限"},
    "checks": {"en": "Checks", "zh": "检查项"},
    "check": {"en": "Check", "zh": "检查"},
    "points": {"en": "Points", "zh": "分数"},
    "result": {"en": "Result", "zh": "结果"},
    "passed": {"en": "passed", "zh": "通过"},
    "failed": {"en": "failed", "zh": "未通过"},
    "note": {"en": "note", "zh": "提示"},
    "not_run": {"en": "Not run", "zh": "未运行"},
    "hidden": {"en": "hidden check: only the result is shown", "zh": "隐藏检查：只显示结果"},
    "expected": {"en": "expected", "zh": "期望"},
    "got": {"en": "got", "zh": "实际"},
    "max_abs": {"en": "max abs error", "zh": "最大绝对误差"},
    "max_rel": {"en": "max rel error", "zh": "最大相对误差"},
    "worst_channel": {"en": "worst channel", "zh": "误差最大的通道"},
    "mismatched": {"en": "values off", "zh": "超出容差的元素"},
    "tolerance": {"en": "tolerance", "zh": "容差"},
    "likely": {"en": "Likely mistake", "zh": "可能的错误"},
    "finding": {"en": "Finding", "zh": "发现"},
    "hint": {"en": "Hint", "zh": "提示"},
    "details": {"en": "Details", "zh": "详细信息（英文）"},
    "notes": {"en": "Notes (no points)", "zh": "提示（不扣分）"},
    "training": {"en": "Training: LeNet-5 on CIFAR-10", "zh": "训练：LeNet-5 在 CIFAR-10 上"},
    "train_loss": {"en": "Training loss", "zh": "训练集 loss"},
    "val_loss": {"en": "Validation loss", "zh": "验证集 loss"},
    "epoch": {"en": "epoch", "zh": "轮次 (epoch)"},
    "loss": {"en": "cross-entropy", "zh": "交叉熵"},
    "test_acc": {"en": "Test accuracy", "zh": "测试集准确率"},
    "run": {"en": "Run", "zh": "模型"},
    "this_run": {"en": "this run", "zh": "本次"},
    "slides": {"en": "slides (full training)", "zh": "课件（完整训练）"},
    "no_bn": {"en": "no BN", "zh": "无 BN"},
    "reference_bn": {"en": "reference BN", "zh": "参考 BN"},
    "student_bn": {"en": "your BN", "zh": "你的 BN"},
    "cached": {"en": "cached", "zh": "缓存"},
    "seconds": {"en": "seconds", "zh": "秒"},
    "training_note": {"en": "{epochs} epochs on {device}, {n_train} training / {n_val} validation / {n_test} test "
                      "images. The slides trained much longer; compare the runs with each other.",
                      "zh": "在 {device} 上训练 {epochs} 轮，训练/验证/测试图像：{n_train} / {n_val} / {n_test}。"
                            "课件训练时间长得多，请比较本次的三个模型。"},
    "facts": {"en": "Run facts", "zh": "运行信息"},
    "seed": {"en": "seed", "zh": "随机种子"},
    "torch": {"en": "torch version", "zh": "torch 版本"},
    "device": {"en": "device", "zh": "设备"},
    "rubric": {"en": "rubric", "zh": "评分标准"},
    "rubric_hash": {"en": "rubric hash", "zh": "评分标准哈希"},
    "submission_hash": {"en": "submission hash", "zh": "提交文件哈希"},
    "time": {"en": "time taken", "zh": "用时"},
    "graded_at": {"en": "graded at", "zh": "评分时间"},
    "grader": {"en": "grader version", "zh": "评分器版本"},
    "output": {"en": "What your code printed", "zh": "你的代码的输出"},
    "flags": {"en": "Flags", "zh": "标记"},
    "reason": {"en": "Reason", "zh": "原因"},
}


# the reasons a check could not run on this machine, as the checks word them
SKIPPED = {
    "no CUDA device here: the GPU forward check was not run": "本机没有 CUDA 设备：未运行 GPU 前向检查",
    "training stage not run (--no-train)": "未运行训练阶段（--no-train）",
}


def skipped(reason: str, lang: str) -> str:
    return SKIPPED.get(reason, reason) if lang == "zh" else reason


def t(key: str, lang: str) -> str:
    return TEXT[key][lang]


def default_language(rubric_language: str | None) -> str:
    """The rubric's language if it sets one, else the locale's (zh for a Chinese locale)."""
    if rubric_language:
        return rubric_language
    loc = os.environ.get("LC_ALL") or os.environ.get("LC_MESSAGES") or os.environ.get("LANG") or ""
    if not loc:
        loc = (locale.getlocale()[0] or "")
    return "zh" if loc.lower().startswith("zh") else "en"
