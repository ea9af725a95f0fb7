"""Intake of submissions: from what a student handed in to the one .py file that is graded
(parent process; parses, never imports or runs student code).

Owns the student ids of a class folder (`discover`, `safe_id`: one entry per student, its name
without the extension, safe as an output folder name) and `prepare`, which turns an entry, a
.py, a folder, a .zip or a notebook, into the .py that defines `class BatchNorm2d`. Files are
read as bytes and parsed with ast and json; zips are extracted member by member under caps,
never with extractall; a notebook becomes one .py of its code cells with IPython lines blanked
(grading then loads only what BatchNorm2d uses, see slicing.py), with a `LineMap` so that
`locate` can name the cell and the line in it in every error. Every problem with an entry
becomes `Intake.error`, one line for the report. Grading the chosen file is the sandbox's
business, not this module's.
"""
import ast
import io
import json
import os
import re
import shutil
import stat
import unicodedata
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

KINDS = (".py", ".zip", ".ipynb")
MB = 1_000_000
ZIP_MAX_MEMBERS = 2000
ZIP_MAX_TOTAL = 50 * MB
ZIP_MAX_MEMBER = 10 * MB
ZIP_MAX_RATIO = 200  # uncompressed:compressed, for members above ZIP_RATIO_FROM
ZIP_RATIO_FROM = 1 * MB
MAX_DEPTH = 4  # folder levels below the entry searched for the homework
MAX_FILES = 1000  # .py/.ipynb files examined per entry
MAX_PY = 5 * MB
MAX_NOTEBOOK = 100 * MB  # notebooks keep their outputs (plots): large, but still read whole
ID_MAX = 100  # characters; CJK takes 3 bytes each and file names end at 255
# a class folder unpacked on a Mac, caches, environments and packages a student zipped along
SKIP_DIRS = {"__MACOSX", "__pycache__", "node_modules", "site-packages", "dist-packages", "venv", "env",
             "virtualenv"}
UNSUPPORTED = "unsupported entry type (use a folder, .py, .zip or .ipynb)"
CLASS_LINE = re.compile(r"^class\s+BatchNorm2d\b", re.M)


@dataclass
class Intake:
    student: str
    entry: Path
    source: Path | None  # the .py to grade: the original file, or one written under staging
    notes: list[str]  # shown in the report
    error: str = ""  # non-empty: this entry cannot be graded; one line, the reason
    line_map: "LineMap | None" = None  # a notebook's: pass to grading so that errors name cells


class _Reject(Exception):
    """A problem with the student's entry: its message becomes Intake.error."""


def _cjk(c: str) -> bool:
    o = ord(c)
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x3134F  # ideographs
            or 0xF900 <= o <= 0xFAFF or 0x3040 <= o <= 0x30FF  # compatibility ideographs, kana
            or 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F)  # hangul


def safe_id(name: str) -> str:
    # NFC first: macOS hands out decomposed names, Hangul would arrive as loose jamo
    name = unicodedata.normalize("NFC", name)
    s = "".join(c if (c.isascii() and (c.isalnum() or c in "._-")) or _cjk(c) else "_" for c in name)
    s = s[:ID_MAX]
    # a leading dot hides the report folder, and '.' and '..' are not folders of their own
    s = re.sub(r"^\.+", lambda m: "_" * len(m.group()), s)
    return s or "_"


def _show(text: str) -> str:
    # names in notes and errors: a file name may hold a newline, and an error is one line
    return "".join(c if c.isprintable() else "?" for c in text)


def discover(folder: Path) -> list[tuple[str, Path]]:
    """(student id, entry), sorted by id: every entry but hidden ones and __MACOSX/__pycache__,
    unsupported kinds included (prepare gives them the error)."""
    entries = [p for p in sorted(Path(folder).iterdir())
               if not p.name.startswith(".") and p.name not in ("__MACOSX", "__pycache__")]
    raw = {p: p.name if p.is_dir() else p.stem for p in entries}
    same = defaultdict(list)
    for p in entries:
        same[raw[p]].append(p)
    for group in same.values():
        if len(group) > 1:  # alice.py and alice.zip: both full names, nobody is lost
            for p in group:
                raw[p] = p.name
    # case-insensitive: the report folders may live on a macOS or Windows disk
    by_key = defaultdict(list)
    for p in entries:
        by_key[safe_id(raw[p]).casefold()].append(p)
    taken = set(by_key)
    ids = {}
    for key in sorted(by_key):
        first, *rest = sorted(by_key[key], key=lambda p: p.name)
        ids[first] = safe_id(raw[first])
        for p in rest:
            base, n = safe_id(raw[p]), 2
            while f"{base}-{n}".casefold() in taken:
                n += 1
            taken.add(f"{base}-{n}".casefold())
            ids[p] = f"{base}-{n}"
    return sorted(((ids[p], p) for p in entries), key=lambda t: t[0])


def prepare(student: str, entry: Path, staging: Path) -> Intake:
    """Never raises for bad student input: every problem becomes Intake.error."""
    entry, notes = Path(entry), []
    line_map = None
    try:
        (source, line_map), error = _prepare(entry, Path(staging), safe_id(student), notes), ""
    except _Reject as e:
        source, error = None, str(e)
    except OSError as e:
        source, error = None, f"cannot read {_show(entry.name)}: {_show(e.strerror or str(e))}"
    return Intake(student, entry, source, notes, error, line_map)


def _prepare(entry: Path, staging: Path, slot: str, notes: list[str]) -> tuple[Path, "LineMap | None"]:
    if entry.is_dir():
        return _from_folder(entry, entry.name, staging / f"{slot}.py", notes)
    kind = entry.suffix.lower()
    if not entry.is_file() or kind not in KINDS:  # also FIFOs and broken links: never opened
        raise _Reject(UNSUPPORTED)
    if kind == ".py":
        _note_py(entry, entry.name, notes)
        return entry, None
    if kind == ".ipynb":
        data = _read(entry, MAX_NOTEBOOK)
        if data is None:
            raise _Reject(f"the notebook is larger than {MAX_NOTEBOOK // MB} MB")
        text, nb_notes, defines, where = _notebook(data)
        notes.extend(nb_notes)
        if not defines:
            notes.append("no top-level class BatchNorm2d in the notebook's code cells")
        out = _write(staging / f"{slot}.py", text)
        return out, LineMap(_show(entry.name), out.name, where)
    root = staging / slot
    _extract(entry, root, notes)
    return _from_folder(root, entry.name, staging / f"{slot}.py", notes)


def _read(path: Path, cap: int) -> bytes | None:
    """The file's bytes, or None when it is larger than cap."""
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    return None if len(data) > cap else data


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # never write through a link left in staging
    # errors="replace": JSON may carry lone surrogates, which UTF-8 cannot encode
    path.write_text(text, encoding="utf-8", errors="replace")
    return path


def _parse(src: bytes | str):
    """(tree, "") or (None, why): bytes honour the coding cookie and BOM as Python would."""
    try:
        return ast.parse(src), ""
    except SyntaxError as e:
        return None, f"line {e.lineno}: {e.msg}"
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        return None, type(e).__name__


def _defines(tree) -> bool:
    return any(isinstance(n, ast.ClassDef) and n.name == "BatchNorm2d" for n in tree.body)


def _note_py(path: Path, name: str, notes: list[str]) -> None:
    data = _read(path, MAX_PY)
    if data is None:
        notes.append(f"{_show(name)} is larger than {MAX_PY // MB} MB; not checked for class BatchNorm2d")
        return
    tree, why = _parse(data)
    if tree is None:
        notes.append(f"{_show(name)} does not parse ({_show(why)}); the grader reports the error")
    elif not _defines(tree):
        notes.append(f"no top-level class BatchNorm2d in {_show(name)}")


# -- folders ---------------------------------------------------------------------------------

def _walk(root: Path, notes: list[str]) -> list[tuple[str, Path]]:
    """(relative posix path, path) of the .py and .ipynb files the homework may be in."""
    found, links, stack = [], [], [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        with os.scandir(folder) as it:
            items = sorted(it, key=lambda e: e.name)
        for e in items:
            if e.name.startswith("."):  # .venv, .git, .ipynb_checkpoints, macOS's ._ files
                continue
            rel = Path(e.path).relative_to(root).as_posix()
            if e.is_symlink():  # it may point anywhere, the grader's own files included
                links.append(rel)
            elif e.is_dir():
                if depth < MAX_DEPTH and e.name not in SKIP_DIRS and not _is_env(Path(e.path)):
                    stack.append((Path(e.path), depth + 1))
            elif e.is_file() and e.name.lower().endswith((".py", ".ipynb")):
                found.append((rel, Path(e.path)))
    if links:
        notes.append(f"skipped {len(links)} symlink(s): {_listing(sorted(links))}")
    found.sort()
    if len(found) > MAX_FILES:
        notes.append(f"{len(found)} .py/.ipynb files; only the first {MAX_FILES} were examined")
    return found[:MAX_FILES]


def _is_env(folder: Path) -> bool:
    return (folder / "pyvenv.cfg").exists() or (folder / "conda-meta").is_dir()


def _listing(names: list[str], most: int = 10) -> str:
    shown = ", ".join(_show(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _rank(rel: str):
    name = rel.rsplit("/", 1)[-1].lower()
    return (0 if "batchnorm" in name or "bn" in name else 1, len(rel), rel)


def _from_folder(root: Path, label: str, notebook_out: Path, notes: list[str]) -> tuple[Path, "LineMap | None"]:
    candidates = {}  # rel -> converted notebook (text, notes) or None for a .py
    files = _walk(root, notes)
    for rel, path in files:
        if rel.lower().endswith(".py"):
            data = _read(path, MAX_PY)
            if data is None:
                notes.append(f"skipped {_show(rel)}: larger than {MAX_PY // MB} MB")
                continue
            tree, _ = _parse(data)
            # one that does not parse but plainly holds the class is still the homework: the
            # sandbox reports its syntax error
            if (_defines(tree) if tree is not None else CLASS_LINE.search(data.decode("utf-8", "replace"))):
                candidates[rel] = None
        else:
            data = _read(path, MAX_NOTEBOOK)
            try:
                if data is None:
                    raise _Reject("too large")
                text, nb_notes, defines, where = _notebook(data)
            except _Reject:
                notes.append(f"skipped {_show(rel)}: not a readable notebook")
                continue
            if defines:
                candidates[rel] = (text, nb_notes, where)
    if not candidates:
        found = _listing([rel for rel, _ in files]) or "nothing"
        raise _Reject(f"no .py or .ipynb in {_show(label)} defines class BatchNorm2d (found: {found})")
    pick = min(candidates, key=_rank)
    if len(candidates) > 1:
        notes.append(f"picked {_show(pick)} ({len(candidates)} files define class BatchNorm2d: "
                     f"{_listing(sorted(candidates))})")
    if candidates[pick] is None:
        _note_py(root / pick, pick, notes)
        return root / pick, None
    text, nb_notes, where = candidates[pick]
    notes.extend(f"{_show(pick)}: {n}" for n in nb_notes)
    out = _write(notebook_out, text)
    return out, LineMap(_show(pick), out.name, where)


# -- zips ------------------------------------------------------------------------------------

def _extract(zpath: Path, root: Path, notes: list[str]) -> None:
    """Extract into root, or raise _Reject with root removed."""
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise _Reject("not a readable zip file") from None
    with zf:
        plan = _plan(zf, notes)  # every check on the declared members first: a bad one, nothing written
        if root.is_symlink() or root.is_file():
            root.unlink()
        elif root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        try:
            total = 0
            for info, parts in plan:
                dest = root.joinpath(*parts)
                if info.filename.endswith(("/", "\\")):
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                total += _extract_one(zf, info, dest, ZIP_MAX_TOTAL - total)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise


def _plan(zf: zipfile.ZipFile, notes: list[str]):
    try:
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError):
        raise _Reject("not a readable zip file") from None
    if len(infos) > ZIP_MAX_MEMBERS:
        raise _Reject(f"the zip has {len(infos)} members (at most {ZIP_MAX_MEMBERS})")
    plan, links, declared = [], [], 0
    for info in infos:
        name = info.filename
        # backslashes too: zips made on Windows use them, and this must hold wherever it runs
        parts = re.split(r"[\\/]", name)
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts:
            raise _Reject(f"unsafe path in the zip: {_show(name)} (absolute or outside the folder)")
        if stat.S_ISLNK(info.external_attr >> 16):
            links.append(name)
            continue
        parts = [p for p in parts if p not in ("", ".")]
        if not parts:
            continue
        if not name.endswith(("/", "\\")):
            if info.file_size > ZIP_MAX_MEMBER:
                raise _Reject(f"{_show(name)} in the zip is {info.file_size / MB:.1f} MB uncompressed "
                              f"(at most {ZIP_MAX_MEMBER // MB} MB per file)")
            if info.file_size > ZIP_RATIO_FROM and info.file_size > ZIP_MAX_RATIO * info.compress_size:
                raise _Reject(f"{_show(name)} in the zip is compressed more than {ZIP_MAX_RATIO}:1 "
                              "(a zip bomb?)")
            declared += info.file_size
        plan.append((info, parts))
    if declared > ZIP_MAX_TOTAL:
        raise _Reject(f"the zip holds {declared / MB:.1f} MB uncompressed (at most {ZIP_MAX_TOTAL // MB} MB)")
    if links:
        notes.append(f"skipped {len(links)} symlink(s) in the zip: {_listing(links)}")
    return plan


class _TooBig(Exception):
    pass


def _copy_capped(src, dst, limit: int) -> int:
    """Copy src to dst, at most limit bytes: the bytes that actually come out count, whatever
    the zip declared."""
    n = 0
    while True:
        chunk = src.read(min(1 << 16, limit - n + 1))
        if not chunk:
            return n
        n += len(chunk)
        if n > limit:
            raise _TooBig()
        dst.write(chunk)


def _extract_one(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, total_left: int) -> int:
    limit = min(ZIP_MAX_MEMBER, total_left)
    try:
        with zf.open(info) as src, open(dest, "wb") as dst:
            return _copy_capped(src, dst, limit)
    except _TooBig:
        raise _Reject(f"{_show(info.filename)} in the zip holds more than declared: stopped at "
                      f"{limit / MB:.1f} MB (at most {ZIP_MAX_MEMBER // MB} MB per file, "
                      f"{ZIP_MAX_TOTAL // MB} MB in all)") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError, ValueError) as e:
        # a bad CRC, an encrypted member, an unknown compression method
        raise _Reject(f"cannot extract {_show(info.filename)} from the zip: {_show(str(e))}") from None


# -- notebooks -------------------------------------------------------------------------------

def _cells(data: bytes) -> list:
    try:
        nb = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _Reject("not a readable notebook") from None
    if isinstance(nb, dict) and isinstance(nb.get("cells"), list):
        return nb["cells"]
    if isinstance(nb, dict) and isinstance(nb.get("worksheets"), list):  # nbformat 3: input, not source
        return [dict(c, source=c.get("input", "")) for ws in nb["worksheets"] if isinstance(ws, dict)
                for c in ws.get("cells", []) if isinstance(c, dict)]
    raise _Reject("not a readable notebook")


HELP_LINE = re.compile(r"^[\w.]+\s*\?{1,2}$")  # torch.mean? and torch.mean??
MAGIC_ASSIGN = re.compile(r"^[\w.,\s]+=\s*[!%]")  # files = !ls, t = %timeit f()


def _strip_magics(src: str) -> str:
    """IPython lines blanked (a `pass` where indented), so the line numbers stay."""
    out = []
    for line in io.StringIO(src, newline="").readlines():
        s = line.strip()
        if s.startswith(("!", "%", "?")) or HELP_LINE.match(s) or MAGIC_ASSIGN.match(s):
            indent = line[:len(line) - len(line.lstrip())]
            line = f"{indent}pass\n" if indent else "\n"
        out.append(line)
    return "".join(out)


def _cell_magic_body(src: str) -> str | None:
    """The lines after a leading %%magic line, or None when the cell has none."""
    lines = io.StringIO(src, newline="").readlines()
    for i, line in enumerate(lines):
        if line.strip():
            return "".join(lines[i + 1:]) if line.lstrip().startswith("%%") else None
    return None


HEADER = "# written by grader/intake.py from a notebook: its code cells, in order, IPython lines blanked\n"


def _notebook(data: bytes) -> tuple[str, list[str], bool, tuple]:
    """(Python text, notes, defines BatchNorm2d, where each line came from) from a notebook's
    code cells. Every cell that parses is kept whole: grading loads only BatchNorm2d and what it
    uses (grader/slicing.py), so a training or plotting cell never runs, and a constant computed
    by a call (`eps = torch.finfo(torch.float32).eps`) is still there when the layer needs it."""
    cells = _cells(data)
    out, where = [], []

    def emit(text, cell=None, first=1):
        lines = io.StringIO(text, newline="").readlines()  # the parser's lines
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += "\n"
        out.extend(lines)
        where.extend((cell, first + k) if cell else None for k in range(len(lines)))

    emit(HEADER)
    notes, code_cells, kept_cells, broken_class = [], 0, 0, False
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        code_cells += 1
        src = cell.get("source", "")
        if isinstance(src, list) and all(isinstance(s, str) for s in src):
            src = "".join(src)
        if not isinstance(src, str):
            notes.append(f"cell {number}: unreadable source, dropped")
            continue
        first = 1  # the cell's line number of src's first line
        tree, why = _parse(src)
        if tree is None:
            body = _cell_magic_body(src)
            if body is not None:
                tree, why = _parse(body)
                if tree is None or not _defines(tree):
                    notes.append(f"cell {number}: a %% cell magic, dropped")
                    continue
                first += len(io.StringIO(src, newline="").readlines()) - len(io.StringIO(body, newline="").readlines())
                src = body  # %%time or %%writefile around the homework: its body is Python
                notes.append(f"cell {number}: kept the Python under its %% cell magic (it defines BatchNorm2d)")
            else:
                src = _strip_magics(src)
                tree, why = _parse(src)
        if tree is None:
            if not CLASS_LINE.search(src):
                notes.append(f"cell {number} does not parse ({_show(why)}); dropped")
                continue
            # the homework itself: kept, so the sandbox reports the error with its cell and line
            broken_class = True
            notes.append(f"cell {number} does not parse ({_show(why)}); kept, it defines BatchNorm2d")
        elif not tree.body:
            continue  # only comments
        kept_cells += 1
        emit(f"\n# --- cell {number} ---\n")
        emit(src, number, first)
    text = "".join(out)
    tree, _ = _parse(text)
    summary = f"notebook: kept {kept_cells} of {code_cells} code cells"
    return text, [summary] + notes, broken_class or (tree is not None and _defines(tree)), tuple(where)


# -- cells in error messages ---------------------------------------------------------------

@dataclass(frozen=True)
class LineMap:
    """Where each line of the .py written from a notebook came from, so that errors name cells."""
    notebook: str  # the notebook as the student named it
    script: str  # the written .py's file name, as tracebacks show it
    lines: tuple  # lines[n - 1]: (cell number, line in that cell) of line n, or None


def cell_of(line_map: LineMap | None, n: int) -> tuple[int, int] | None:
    """(cell, line in the cell) of line n of the written .py, or None (a line the grader wrote)."""
    if line_map is None or not 1 <= n <= len(line_map.lines):
        return None
    return line_map.lines[n - 1]


# `File "x.py", line 12` (tracebacks), `x.py, line 12` (SyntaxError), `x.py:12`, a bare `line 12`
LINE_REF = re.compile(r'File "(?P<q>[^"\n]+)", line (?P<qn>\d+)'
                      r'|(?P<f>[\w.\-]+\.py)(?:, line |:)(?P<fn>\d+)'
                      r'|\bline (?P<n>\d+)')


def locate(text: str, line_map: LineMap | None) -> str:
    """text with each line of the written .py named as the student knows it: `File "hw.ipynb",
    cell 3, line 4`, `hw.ipynb, cell 3, line 4`, `cell 3, line 4`. Other files' lines and lines
    the grader wrote stay as they are; without a map (a .py submission) text is returned as is."""
    if line_map is None or not text:
        return text

    def one(m):
        name = m.group("q") or m.group("f")
        if name is not None and os.path.basename(name) != line_map.script:
            return m.group(0)
        at = cell_of(line_map, int(m.group("qn") or m.group("fn") or m.group("n")))
        if at is None:
            return m.group(0)
        where = f"cell {at[0]}, line {at[1]}"
        if m.group("q") is not None:
            return f'File "{line_map.notebook}", {where}'
        return f"{line_map.notebook}, {where}" if name is not None else where

    return LINE_REF.sub(one, text)
