"""The training stage's progress line: fits the terminal, names the run in the user's words
with the time left for the whole stage, and never stacks frames into a log."""
import io

import pytest

from grader.output.progress import Progress, _cols


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("width", [80, 60, 40, 24])
def test_line_fits_the_width_in_both_languages(lang, width):
    p = Progress(Tty(), lang=lang, width=width)
    for name in ("no_bn", "reference_bn", "student_bn"):
        for epoch, step in ((0, 0), (4, 351), (19, 99)):
            line = p.line(name, epoch, 20, step, 352, elapsed=3725.0)
            assert _cols(line) <= width, (line, _cols(line))


def test_words_the_user_knows_and_time_left_for_the_whole_stage():
    p = Progress(Tty(), width=80)
    # half of the first run in 30 s: 30 s of it left, then two more runs of about 60 s each
    line = p.line("no_bn", 0, 2, 49, 50, elapsed=30.0)
    assert "no BN, run 1 of 3" in line and "2:30 left" in line
    p.done("no_bn         test accuracy 32.29% (40 s)")
    p.done("reference_bn  test accuracy 52.97% (50 s)")
    assert p.line("student_bn", 0, 2, 49, 50, elapsed=30.0).endswith("0:30 left")
    assert "your BN, run 3 of 3" in p.line("student_bn", 0, 2, 49, 50, elapsed=30.0)
    zh = Progress(Tty(), lang="zh", width=80).line("reference_bn", 0, 2, 0, 50, elapsed=1.0)
    assert "参考 BN，第 2/3 次训练" in zh and "剩余" in zh and "student_bn" not in zh


def test_a_terminal_redraws_one_line_a_log_gets_one_line_per_run():
    tty = Tty()
    p = Progress(tty, width=80)
    for step in range(5):
        p("student_bn", 0, 1, step, 5, 2.3, elapsed=step + 1.0)
    p.done("student_bn    test accuracy 51.02% (5 s)")
    out = tty.getvalue()
    assert out.count("\r") >= 5 and out.count("\n") == 1
    assert out.rstrip("\n").split("\r\033[K")[-1] == "your BN: test accuracy 51.02% (5 s)"

    log = io.StringIO()  # not a terminal: CI, a redirect
    p = Progress(log)
    for step in range(5):
        p("student_bn", 0, 1, step, 5, 2.3, elapsed=step + 1.0)
    p.done("student_bn    test accuracy 51.02% (5 s)")
    assert log.getvalue() == "your BN: test accuracy 51.02% (5 s)\n"

    quiet = io.StringIO()
    p = Progress(quiet, enabled=False)
    p("student_bn", 0, 1, 0, 5, 2.3, elapsed=1.0)
    p.done("student_bn    test accuracy 51.02% (5 s)")
    assert quiet.getvalue() == ""
