"""Student-facing words of the report and terminal, and why a check was not run (SKIPPED), in
English and Chinese (grader process; imports nothing, so anything may use it). Check titles live
in the rubric and diagnoses in checks/mistakes.py, both in the two languages."""
import locale
import os
import re

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
    # a note (advisory, no points) and a hint (how to fix a mistake) are told apart in both languages
    "note": {"en": "note", "zh": "备注"},
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
    "hint": {"en": "Hint", "zh": "修改提示"},
    "suggestion": {"en": "Suggestion", "zh": "建议"},
    "details": {"en": "Details", "zh": "详细信息（英文）"},
    "notes": {"en": "Notes (no points)", "zh": "备注（不扣分）"},
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
    "pack_baselines": {"en": " The no-BN and reference-BN runs come from the course's check pack (trained on {device}{data}).",
                       "zh": " 无 BN 与参考 BN 的结果来自课程的检查包（在 {device} 上训练{data}）。"},
    "pack_other_data": {"en": ", on the instructor's copy of CIFAR-10", "zh": "，使用教师的 CIFAR-10 副本"},
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
    "sandbox": {"en": "sandbox", "zh": "沙箱"},
    "network": {"en": "network", "zh": "网络"},
    "user": {"en": "user", "zh": "用户"},
    "output": {"en": "What your code printed", "zh": "你的代码的输出"},
    "flags": {"en": "Flags", "zh": "标记"},
    "reason": {"en": "Reason", "zh": "原因"},
    # the integrity review (checks/static.py review()): instructor-facing
    "needs_review": {"en": "Needs review", "zh": "需要人工复核"},
    "needs_review_note": {"en": "For the instructor: the grader's source scan found code that can switch off or hide "
                                "from its run-time checks, or a copy of the reference. The score is unchanged; a "
                                "person decides.",
                          "zh": "供教师参考：评分器的源码扫描发现了可以关闭或绕过运行时检查的代码，或参考实现的副本。"
                                "得分未因此改变，由人工判断。"},
    "review_info": {"en": "For information", "zh": "供参考"},
    "review_head_needs": {"en": "NEEDS REVIEW (instructor)", "zh": "需要人工复核（教师）"},
    "review_head_info": {"en": "Info (no effect on the score)", "zh": "信息（不影响得分）"},
    "review_lines": {"en": "lines", "zh": "行"},
    "similarity": {"en": "similarity", "zh": "相似度"},
    "evidence": {"en": "evidence", "zh": "证据"},
    "line": {"en": "line", "zh": "行"},
    # the report's "fix first" section and training notes
    "n_mistakes": {"en": "{n} likely mistakes", "zh": "{n} 个可能的错误"},
    "one_mistake": {"en": "1 likely mistake", "zh": "1 个可能的错误"},
    "costs": {"en": "costs {points} points", "zh": "扣 {points} 分"},
    "broke": {"en": "Checks it broke", "zh": "导致未通过的检查"},
    "also_in": {"en": "also named here", "zh": "也出现在此"},
    "other_failed": {"en": "Failed checks without a recognised pattern", "zh": "未识别出错误模式的未通过检查"},
    "other_failed_note": {"en": "Compare expected and got in the check's details below.",
                          "zh": "请对照下方该检查详细信息中的期望值和实际值。"},
    "all_passed": {"en": "Every graded check passed.", "zh": "所有计分检查均已通过。"},
    "failed_details": {"en": "Details of the failed checks", "zh": "未通过检查的详细信息"},
    "see_mistake": {"en": "see", "zh": "见"},
    "slides_09": {"en": "slides, decay 0.9", "zh": "课件，衰减 0.9"},
    "slides_099": {"en": "slides, decay 0.99", "zh": "课件，衰减 0.99"},
    "slides_note": {"en": "The slides trained the reference BN twice, with the moving-average decay (this homework's "
                           "momentum argument: moving = m·moving + (1 − m)·batch) set to 0.9 and to 0.99. The decay "
                           "changes only the running statistics that eval mode uses, so the two figures barely "
                           "differ; no BN has no running statistics. The slides trained for far longer than this "
                           "run: compare this run's rows with each other, not with the slides.",
                    "zh": "课件用两种滑动平均衰减率（即本作业的 momentum 参数：moving = m·moving + (1 − m)·batch）"
                          "各训练了一次参考 BN：0.9 和 0.99。衰减率只影响评估模式使用的滑动统计量，所以两个结果相差很小；"
                          "无 BN 的模型没有滑动统计量。课件的训练时间比本次长得多：请比较本次的各行，而不是与课件比较。"},
    "why_beat": {"en": "Why can your BN match or beat the reference here and still lose points? Test accuracy after a "
                        "few epochs is a forgiving, noisy measure: a layer with a small formula error (the momentum "
                        "convention reversed, eps outside the square root) often still trains well. Your points come "
                        "from the unit checks, which compare your layer's outputs, statistics and gradients with the "
                        "reference on fixed inputs.",
                 "zh": "为什么你的 BN 准确率不低于参考实现却仍被扣分？训练几轮后的测试准确率是一个宽松且有随机波动的指标："
                       "公式有小错误的层（例如 momentum 约定反了、eps 放在了平方根外）往往仍能训练得不错。得分来自单元检查，"
                       "它们在固定输入上将你的层的输出、统计量和梯度与参考实现逐一比较。"},
    # the terminal
    "grader_head": {"en": "BatchNorm grader", "zh": "BatchNorm 评分器"},
    "PASS": {"en": "PASS", "zh": "通过"},
    "FAIL": {"en": "FAIL", "zh": "失败"},
    "NOTE": {"en": "note", "zh": "备注"},
    "OK": {"en": " ok ", "zh": "正常"},
    "total": {"en": "Total", "zh": "总分"},
    "likely_lc": {"en": "likely mistake", "zh": "可能的错误"},
    "finding_lc": {"en": "finding", "zh": "发现"},
    "hint_lc": {"en": "hint", "zh": "修改提示"},
    "suggestion_lc": {"en": "suggestion", "zh": "建议"},
    "note_lc": {"en": "note", "zh": "备注"},
    "not_run_lc": {"en": "not run", "zh": "未运行"},
    "term_training": {"en": "Training: LeNet-5, {epochs} epochs on {device}, {n} training images{cached}",
                      "zh": "训练：LeNet-5，在 {device} 上训练 {epochs} 轮，{n} 张训练图像{cached}"},
    "term_cached": {"en": " (baselines cached)", "zh": "（基线来自缓存）"},
    "term_acc": {"en": "  test accuracy: no BN {no}, reference BN {ref}, your BN {you}   (slides, full training: "
                       "74.33% / 78.26%)",
                 "zh": "  测试集准确率：无 BN {no}，参考 BN {ref}，你的 BN {you}   （课件，完整训练：74.33% / 78.26%）"},
    "term_facts": {"en": "{seconds:.1f} s, seed {seed}, torch {torch}, {device}, rubric {rubric}",
                   "zh": "用时 {seconds:.1f} 秒，随机种子 {seed}，torch {torch}，{device}，评分标准 {rubric}"},
    "term_printed": {"en": "Your code printed ({n} lines; last 10 shown):",
                     "zh": "你的代码的输出（共 {n} 行，显示最后 10 行）："},
    "term_details": {"en": "", "zh": "详细信息（英文）："},
    # why a submission could not be graded, before the original error text (kept verbatim)
    "why_error": {"en": "", "zh": "无法加载或运行你的代码。原始错误信息（英文）："},
    "why_timeout": {"en": "", "zh": "加载你的代码超时。原始信息（英文）："},
    "why_memory": {"en": "", "zh": "加载你的代码时内存超限。原始信息（英文）："},
    # the maximum, stated the same way everywhere (output/text.py maximum_text(); rule in scoring.py)
    "max_all": {"en": "Maximum {points} points: every graded check of the rubric.",
                "zh": "满分 {points} 分：评分标准中的全部计分检查。"},
    "max_less": {"en": "Maximum {points} points: the rubric's {rubric}, less {less} for checks not run here ({what}).",
                 "zh": "满分 {points} 分：评分标准共 {rubric} 分，减去本次未运行的检查 {less} 分（{what}）。"},
    "max_same": {"en": "The same for every submission graded this way; code that does not load scores 0 of it.",
                 "zh": "以同样方式评分的每份提交满分相同；无法加载的代码得 0 分。"},
    "max_kind_no_train": {"en": "training stage {points}: --no-train", "zh": "训练阶段 {points} 分：--no-train"},
    "max_kind_machine": {"en": "{check} {points}: this machine cannot run it",
                         "zh": "{check} {points} 分：本机无法运行"},
    "max_kind_pack": {"en": "{check} {points}: not in the check pack", "zh": "{check} {points} 分：检查包中没有"},
    "max_kind_None": {"en": "{check} {points}", "zh": "{check} {points} 分"},
    # the class summary (gradebook.py, summary.html.j2)
    "summary_title": {"en": "BatchNorm homework — class summary", "zh": "BatchNorm 作业 — 全班汇总"},
    "n_students": {"en": "{n} students · {graded} loaded · mean {mean}", "zh": "{n} 名学生 · {graded} 份可加载 · 平均 {mean}"},
    "maximum": {"en": "Maximum", "zh": "满分"},
    "maximum_note": {"en": "{points} points for {n} submissions", "zh": "{n} 份提交满分为 {points} 分"},
    "maximum_mixed": {"en": "The maximum differs between submissions (graded with different rubrics, machines or "
                            "with and without training): regrade them the same way before importing.",
                      "zh": "各提交的满分不同（评分标准、机器或是否训练不一致）：导入前请用相同方式重新评分。"},
    "score_dist": {"en": "Score distribution (% of the maximum)", "zh": "得分分布（占满分的百分比）"},
    "pass_rate": {"en": "Pass rate per check", "zh": "各检查项通过率"},
    "pass_rate_note": {"en": "Over the {graded} submissions that loaded; {bad} that could not be loaded are left out "
                              "(they are listed under Flagged submissions).",
                       "zh": "仅统计可加载的 {graded} 份提交；{bad} 份无法加载的提交不计入（见“标记的提交”）。"},
    "common_diag": {"en": "Most common mistakes", "zh": "最常见的错误"},
    "mistake": {"en": "mistake", "zh": "错误"},
    "n_students_col": {"en": "students", "zh": "学生数"},
    "common_diag_note": {"en": "Each student counts once per mistake, however many checks it broke.",
                         "zh": "每名学生的同一错误只计一次，无论它导致多少项检查未通过。"},
    "flagged_subs": {"en": "Flagged submissions", "zh": "标记的提交"},
    "similar_subs": {"en": "Similar submissions", "zh": "相似的提交"},
    "similar_note": {"en": "Near-identical after normalising names, whitespace and comments, ignoring the template. "
                            "A flag, not a verdict: scores are unchanged.",
                     "zh": "在统一变量名、空白和注释并忽略模板后几乎相同。这只是标记，不是结论：得分不变。"},
    "none": {"en": "none", "zh": "无"},
    "none_above": {"en": "none above the threshold", "zh": "没有超过阈值的"},
    "students_h": {"en": "Students", "zh": "学生"},
    "student": {"en": "student", "zh": "学生"},
    "flag": {"en": "flag", "zh": "标记"},
    "missing_h": {"en": "On the roster, no submission", "zh": "名单中未提交的学生"},
    "name": {"en": "name", "zh": "姓名"},
    "email": {"en": "e-mail", "zh": "邮箱"},
    "missing": {"en": "missing", "zh": "未提交"},
}


# why a check was not run, for the reasons that leave it out of the maximum (scoring.py's rule), by
# code: a result carries the English sentence, skipped() shows it in the reader's language.
# "no_train" is the training stage switched off; every other code is something this machine
# cannot run, named by a check's declaration (checks/registry.py `needs`)
SKIPPED = {
    "no_train": {"en": "training stage not run (--no-train)", "zh": "未运行训练阶段（--no-train）"},
    "no_cuda": {"en": "no CUDA device here: the GPU forward check was not run",
                "zh": "本机没有 CUDA 设备：未运行 GPU 前向检查"},
}


# "cannot be checked with this pack: DETAIL" (checks/runner.py), DETAIL from checks/oracle.py's
# PackOracle; a detail not matched here is kept in English after the translated lead
PACK_LEAD = "cannot be checked with this pack: "
PACK_DETAILS = (
    (re.compile(r"this pack \((?P<pack>.*)\) holds no expected values for (?P<label>.*) \((?P<op>[^()]*)\)$"),
     "检查包（{pack}）中没有 {label}（{op}）的期望值"),
    (re.compile(r"the inputs of (?P<label>.*) differ from the pack's: the pack was made with torch (?P<made>\S+), "
                r"this is torch (?P<here>\S+), or for another seed$"),
     "{label} 的输入与检查包中的不同：检查包由 torch {made} 生成，这里是 torch {here}，或者检查包对应另一个随机种子"),
)
PACK_ZH = "无法用此检查包检查（不计入得分和满分；请向课程索取与评分器版本匹配的检查包）："


def _pack_reason(detail: str) -> str:
    for pattern, zh in PACK_DETAILS:
        m = pattern.match(detail)
        if m:
            parts = {k: v.replace(", seed ", "，随机种子 ") for k, v in m.groupdict().items()}
            return PACK_ZH + zh.format(**parts)
    return PACK_ZH + detail


def skipped(reason: str, lang: str) -> str:
    if lang != "zh":
        return reason
    if reason.startswith(PACK_LEAD):
        return _pack_reason(reason[len(PACK_LEAD):])
    return next((text["zh"] for text in SKIPPED.values() if text["en"] == reason), reason)


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


def reason(status: str, text: str, lang: str) -> str:
    """Why a submission could not be graded, in lang; the original error text follows verbatim
    (the exception and its line are what the student searches for)."""
    lead = TEXT.get(f"why_{status}", {}).get(lang, "")
    return f"{lead}\n{text}" if lead and text else text
