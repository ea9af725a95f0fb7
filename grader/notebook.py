"""The in-notebook check (runs in the student's Jupyter kernel, as the grader's parent side):

    from grader import notebook
    notebook.check(BatchNorm2d)                            # the full edition
    notebook.check(BatchNorm2d, pack="batchnorm.bnpack")   # the student edition, against a check pack

grades the class the student just defined, the way bn-grade grades a file: the class's source
and the module-level names it uses are gathered from the cells that defined them (IPython
keeps every cell's text in linecache under the file name its code objects carry), joined into
one text and sent to the same sandbox over its channel, never written to disk. The class object
in the kernel is never called. The report is shown inline (an iframe, so its styles stay out
of the notebook) and the result is returned.
"""
from __future__ import annotations

import html
import inspect
import linecache
import sys
import types
from pathlib import Path

from grader.errors import UsageError

NAME = "notebook.py"  # what errors and the report call the gathered source


class NotebookError(UsageError):
    """The class's source cannot be found: one line saying what to do."""


def _codes(obj):
    """Every code object of a class or function, nested ones included."""
    todo = []
    if isinstance(obj, type):
        for v in vars(obj).values():
            v = getattr(v, "__func__", v)
            if isinstance(v, property):
                todo += [f for f in (v.fget, v.fset, v.fdel) if f]
            elif isinstance(v, (types.FunctionType, type)):
                todo.append(v)
        todo = [c for f in todo for c in _codes(f)]
        return todo
    code = getattr(obj, "__code__", None)
    if code is None:
        return []
    out, stack = [], [code]
    while stack:
        c = stack.pop()
        out.append(c)
        stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]
    return out


def _cell_text(obj) -> tuple[str, str] | None:
    """(file name, text) of the cell or file that defined obj, from linecache."""
    for code in _codes(obj):
        name = code.co_filename
        lines = linecache.getlines(name)
        if lines:
            return name, "".join(lines)
    try:
        name = inspect.getsourcefile(obj)
        if name:
            return name, "".join(linecache.getlines(name)) or Path(name).read_text(encoding="utf-8")
    except (TypeError, OSError):
        pass
    return None


def _import_line(name: str, value) -> str | None:
    """How a module-level name that is not the student's own code comes back: an import, or a
    literal for a plain constant."""
    if isinstance(value, types.ModuleType):
        mod = value.__name__
        if "." in mod:
            parent, _, leaf = mod.rpartition(".")
            return f"from {parent} import {leaf}" + (f" as {name}" if name != leaf else "")
        return f"import {mod}" + (f" as {name}" if name != mod else "")
    mod = getattr(value, "__module__", None)
    qual = getattr(value, "__qualname__", None)
    if mod and qual and mod != "__main__" and "." not in qual and "<" not in qual:
        return f"from {mod} import {qual}" + (f" as {name}" if name != qual else "")
    if isinstance(value, (int, float, str, bool, type(None))) or (
            isinstance(value, tuple) and all(isinstance(v, (int, float, str, bool)) for v in value)):
        return f"{name} = {value!r}"
    return None


def gather(cls, namespace: dict | None = None) -> str:
    """The text to grade: imports, the cells of the helpers the class uses (followed through the
    helpers' own names), then the class's cell. The grader slices it to BatchNorm2d and what it
    uses, so whatever else those cells hold does not run."""
    if not isinstance(cls, type):
        raise NotebookError(f"notebook.check() takes the class itself, e.g. notebook.check(BatchNorm2d), not "
                            f"{type(cls).__name__}")
    namespace = namespace if namespace is not None else vars(sys.modules.get(cls.__module__, sys.modules["__main__"]))
    own = _cell_text(cls)
    if own is None:
        raise NotebookError(f"cannot find the source of {cls.__name__}: run the cell that defines it again, then "
                            "call notebook.check() in a later cell")
    cells = {own[0]: own[1]}
    imports = ["import torch", "from torch import nn"]
    seen, todo = set(), [cls]
    while todo:
        obj = todo.pop()
        for code in _codes(obj):
            for name in code.co_names:
                if name in seen or name not in namespace or name == cls.__name__:
                    continue
                seen.add(name)
                value = namespace[name]
                if getattr(value, "__module__", None) == "__main__" and isinstance(value, (types.FunctionType, type)):
                    got = _cell_text(value)
                    if got and got[0] not in cells:
                        cells[got[0]] = got[1]
                    todo.append(value)
                else:
                    line = _import_line(name, value)
                    if line and line not in imports:
                        imports.append(line)
    # helpers' cells first, in the order they were run, the class's cell last (it may be redefined
    # after a helper, and the last definition wins, as in the kernel)
    order = [k for k in cells if k != own[0]] + [own[0]]
    return "\n".join(imports) + "\n\n" + "\n\n".join(cells[k].rstrip() + "\n" for k in order)


class Checked:
    """What check() returns: the GradeResult and the report; repr is one line (the report itself
    is displayed above it)."""

    def __init__(self, result, report_html: str, lang: str):
        self.result, self.html, self.lang = result, report_html, lang

    @property
    def score(self):
        return self.result.score

    @property
    def max_score(self):
        return self.result.max_score

    def iframe(self, height: int = 720) -> str:
        # srcdoc, escaped: the report's own <style> and CSP stay inside the frame
        return (f'<iframe class="bn-grade-report" srcdoc="{html.escape(self.html, quote=True)}" '
                f'style="width: 100%; height: {height}px; border: 1px solid #ccc"></iframe>')

    def __repr__(self):
        return f"bn-grade: {self.result.score:g} / {self.result.max_score:g} ({self.result.status.value})"


def _display(checked: Checked) -> bool:
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        return False
    if get_ipython() is None:
        return False
    import warnings
    with warnings.catch_warnings():
        # IPython suggests its IFrame, which loads a URL; a srcdoc frame needs no file or server
        warnings.simplefilter("ignore", UserWarning)
        display(HTML(checked.iframe()))
    return True


def _find_pack(pack):
    """The pack to grade against: the one named, else (student edition only) the single .bnpack in
    the working folder, as the template ships it next to the notebook; None in the full edition."""
    from grader.checks import oracle
    if pack is not None:
        return Path(pack)
    try:
        oracle.computed()
        return None  # the full edition computes the expected values
    except oracle.StudentEdition:
        pass
    found = sorted(Path.cwd().glob("*.bnpack"))
    if len(found) == 1:
        print(f"bn-grade: checking against {found[0].name}", file=sys.stderr)
        return found[0]
    where = "no .bnpack file" if not found else f"{len(found)} .bnpack files"
    raise NotebookError(f"this is the student edition of bn-grade: it checks against your course's check pack, and "
                        f"{Path.cwd()} has {where}; call notebook.check({{}}, pack=\"batchnorm.bnpack\") with the "
                        "pack's path")


def check(cls, *, pack=None, rubric: str | None = None, lang: str | None = None, show: bool = True) -> Checked:
    """Grade the class just defined; shows the report inline under IPython, else prints the
    terminal table. pack: a check pack (the student edition grades against one; the full edition
    may too); rubric: another rubric (with a pack, it must have the pack's seed)."""
    import os
    from grader import cpus
    # the sandbox's zygote, started below, waits as a single submission's grader does
    os.environ.update(cpus.openmp_wait_env(exclusive=True))
    text = gather(cls)
    from grader import grading, pack as pack_mod, rubric as rubric_mod
    try:
        pack_path = _find_pack(pack)
    except NotebookError as e:
        raise NotebookError(str(e).replace("{}", cls.__name__)) from None
    oracle = None
    try:
        if pack_path is not None:
            from grader.checks.oracle import PackOracle
            loaded_pack = pack_mod.read(pack_path)
            loaded = pack_mod.rubric_for(loaded_pack, rubric, grading.known_checks())
            oracle = PackOracle(loaded_pack)
        else:
            loaded = rubric_mod.load(rubric, known_checks=grading.known_checks())
    except (pack_mod.PackError, rubric_mod.RubricError) as e:
        # one line that names the file, as bn-grade says it; no traceback into the notebook's grader
        raise NotebookError(str(e)) from None
    from grader.sandbox import engine, zygote
    # the student's own code, on the student's machine: as bn-grade on a single file, unconfined
    # (with a note) where bubblewrap cannot run
    mode = "bubblewrap"
    if os.environ.get("BN_GRADE_SANDBOX") == "unconfined" or engine.probe():
        mode = "unconfined"
        print("bn-grade: note: running your code unconfined (no bubblewrap sandbox here)", file=sys.stderr)
    z = zygote.shared(mode)
    from grader.output import report, terminal
    from grader.output.i18n import default_language
    lang = lang or default_language(None if loaded.language == "auto" else loaded.language)
    result = grading.grade_file(Path(NAME), loaded, z, text=text, oracle=oracle)
    result.submission = NAME
    checked = Checked(result, report.render(result, lang), lang)
    if show and not _display(checked):
        print(terminal.render(result, lang, colour=False))
    return checked
