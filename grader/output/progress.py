"""Progress of the training stage on stderr (parent process).

On a terminal: one line redrawn in place, never wider than the terminal (80 columns when it
cannot tell), naming the run in the user's words ("your BN, run 3 of 3") with the time left for
the whole stage, not just this run. Not on a terminal (CI logs, a redirect): no redrawing, just
one line per finished run, so nothing stacks. --quiet: nothing.
"""
import re
import shutil
import sys
import unicodedata

from grader.output.i18n import t as word

RUNS = ("no_bn", "reference_bn", "student_bn")  # the stage's order (training/stage.py)
WORDS = {
    "run_of": {"en": "{label}, run {k} of {n}", "zh": "{label}，第 {k}/{n} 次训练"},
    "epoch": {"en": "epoch {e}/{E}", "zh": "第 {e}/{E} 轮"},
    "left": {"en": "{t} left", "zh": "剩余 {t}"},
    "done": {"en": "{label}: test accuracy {acc} ({s} s)", "zh": "{label}：测试集准确率 {acc}（{s} 秒）"},
}


def _cols(text: str) -> int:
    # a Chinese character takes two columns
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _clock(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    def __init__(self, stream=None, enabled=None, lang: str = "en", width: int | None = None):
        self.stream = stream or sys.stderr
        self.lang = lang
        self.enabled = enabled is not False
        # redrawing in place only where a terminal interprets \r; a log would stack every frame
        self.live = self.enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self._width = width
        self._open = False
        self._seconds = {}  # how long each finished run took: the estimate for the runs still to come

    def width(self) -> int:
        if self._width:
            return self._width
        # one column spare: writing into the last column wraps on some terminals
        return max(20, shutil.get_terminal_size((80, 24)).columns - 1)

    def _w(self, key, **kw):
        return WORDS[key][self.lang].format(**kw)

    def label(self, name: str) -> str:
        return word(name, self.lang) if name in RUNS else name

    def line(self, name, epoch, epochs, step, steps, elapsed) -> str:
        """The bar's text, at most width() columns."""
        done = epoch * steps + step + 1
        total = epochs * steps
        per_run = elapsed / done * total if done else 0.0
        left = per_run - elapsed
        k = RUNS.index(name) + 1 if name in RUNS else 1
        # the runs after this one take about as long as this one (same network, data and epochs)
        left += sum(self._seconds.get(n, per_run) for n in RUNS[k:])
        head = self._w("run_of", label=self.label(name), k=k, n=len(RUNS))
        tail = f"{self._w('epoch', e=epoch + 1, E=epochs)}  {self._w('left', t=_clock(left))}"
        width = self.width()
        room = width - _cols(head) - _cols(tail) - 4  # " [" "] " and a space
        if room < 6:  # too narrow for a bar: the words matter more
            text = f"{head}  {self._w('left', t=_clock(left))}"
            while _cols(text) > width:
                text = text[:-1]
            return text
        bar_w = min(room, 30)
        filled = int(bar_w * done / total) if total else bar_w
        return f"{head} [{'#' * filled}{'-' * (bar_w - filled)}] {tail}"

    def __call__(self, name, epoch, epochs, step, steps, loss, elapsed):
        if not self.live:
            return
        text = self.line(name, epoch, epochs, step, steps, elapsed)
        # \r and clear-to-end: a shorter line never leaves the tail of a longer one
        self.stream.write("\r\033[K" + text)
        self.stream.flush()
        self._open = True

    def event(self, msg):
        self(msg["name"], msg["epoch"], msg["epochs"], msg["step"], msg["steps"], msg["loss"], msg["elapsed"])

    def done(self, text):
        if not self.enabled:
            return
        # the stage reports "<run name> test accuracy 52.97% (68 s)"; said in the user's words
        m = re.match(r"^(\w+)\s+test accuracy (\S+) \((\d+) s\)$", text.strip())
        if m:
            self._seconds[m.group(1)] = float(m.group(3))
            text = self._w("done", label=self.label(m.group(1)), acc=m.group(2), s=m.group(3))
        if self._open:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._open = False
