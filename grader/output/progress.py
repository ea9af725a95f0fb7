"""A one-line progress bar per training run on the terminal (parent process).

Silent when the stream is not a terminal or with --quiet, so logs and CI output stay clean.
"""
import sys


class Progress:
    def __init__(self, stream=None, enabled=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._open = False

    def __call__(self, name, epoch, epochs, step, steps, loss, elapsed):
        if not self.enabled:
            return
        done = epoch * steps + step + 1
        total = epochs * steps
        left = elapsed / done * (total - done) if done else 0.0
        width = 24
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{name:<13} [{bar}] epoch {epoch + 1}/{epochs} step {step + 1}/{steps} "
                          f"loss {loss:.3f}  {int(left) // 60}:{int(left) % 60:02d} left ")
        self.stream.flush()
        self._open = True

    def event(self, msg):
        self(msg["name"], msg["epoch"], msg["epochs"], msg["step"], msg["steps"], msg["loss"], msg["elapsed"])

    def done(self, text):
        if not self.enabled:
            return
        if self._open:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._open = False
