"""Placeholders for packages that are not installed where submissions run (sandboxed worker
only; the standard library only, so that it works wherever the sandbox mounts this package).

Students copy the textbook's `from d2l import torch as d2l` and `import matplotlib.pyplot as plt`
into their homework. Where the code is graded only torch and the standard library exist, so
such an import would make a correct layer unloadable. `install()` appends a finder to the end of
sys.meta_path: an import that no other finder satisfies, made by the student's own code, gets a
placeholder module. Importing it, taking names from it and passing them around costs nothing; using
one (calling it, subclassing it, doing arithmetic with it, ...) raises PackageNotInstalled, whose
message names the package, the line that imported it and the line that used it.

Never a placeholder: torch, the standard library, an import guarded by `try: ... except
ImportError` in the student's file (the student's fallback should run), an import made by an
installed library (torch's optional imports must keep failing as torch expects), and a missing
submodule of a real package.
"""
import ast
import importlib.abc
import importlib.machinery
import os
import site
import sys
import sysconfig
import types

NEVER = {"torch", "grader", "reference", "__main__"}
# what an `except` must catch for an import inside its `try` to count as guarded
GUARDS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
MAX_PARSE = 2_000_000  # bytes of a student file read back to look for guards and aliases
HERE = os.path.abspath(__file__)


class PackageNotInstalled(ModuleNotFoundError):
    """A placeholder was used: the message says which package, where imported, where used."""


def install(submission: str | None = None):
    """Append the finder to sys.meta_path (once) and return it.

    submission: the student's file; only imports made by its code get placeholders. Without
    it, imports made by any code outside the Python installation and this package do."""
    for f in sys.meta_path:
        if isinstance(f, _Finder):
            return f
    finder = _Finder(submission)
    sys.meta_path.append(finder)
    return finder


def _installed_dirs() -> tuple[str, ...]:
    dirs = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            dirs.add(paths[key])
    try:
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except AttributeError:  # an old virtualenv's site module
        pass
    torch = sys.modules.get("torch")
    if getattr(torch, "__file__", None):  # an editable or vendored torch outside site-packages
        dirs.add(os.path.dirname(os.path.dirname(torch.__file__)))
    dirs.add(os.path.dirname(HERE))
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


def _machinery(filename: str) -> bool:
    # frames between an import statement and a finder: importlib's frozen bootstrap, this
    # module, and importlib.import_module, which students call too
    return (filename.startswith("<frozen ") or os.path.abspath(filename) == HERE
            or filename.endswith(os.path.join("importlib", "__init__.py")))


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, submission):
        self.only = os.path.realpath(submission) if submission else None
        self.installed = _installed_dirs()
        self.trees = {}  # filename -> parsed student file, or None

    def _student(self, filename: str) -> bool:
        if filename.startswith("<"):  # exec'd strings: torch generates code too
            return False
        real = os.path.realpath(filename)
        if self.only is not None:
            return real == self.only
        return not real.startswith(self.installed)

    def _importer(self):
        """(file, line) of the student's import statement, or None when it is not theirs."""
        f = sys._getframe(1)
        while f is not None and _machinery(f.f_code.co_filename):
            f = f.f_back
        if f is None or not self._student(f.f_code.co_filename):
            return None
        return f.f_code.co_filename, f.f_lineno

    def tree(self, filename):
        if filename not in self.trees:
            try:
                with open(filename, "rb") as fh:
                    data = fh.read(MAX_PARSE + 1)
                self.trees[filename] = ast.parse(data) if len(data) <= MAX_PARSE else None
            except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
                self.trees[filename] = None
        return self.trees[filename]

    def _guarded(self, filename, line) -> bool:
        tree = self.tree(filename)
        if tree is None:
            return False
        for node in ast.walk(tree):
            if not isinstance(node, ast.Try) or not node.body:
                continue
            if node.body[0].lineno <= line <= node.body[-1].end_lineno and any(_catches(h) for h in node.handlers):
                return True
        return False

    def find_spec(self, name, path=None, target=None):
        top, _, _ = name.partition(".")
        if top in NEVER or top in sys.stdlib_module_names or not all(p.isidentifier() for p in name.split(".")):
            return None
        if "." in name:
            parent = sys.modules.get(name.rpartition(".")[0])
            if not isinstance(parent, _PlaceholderModule):
                return None  # a real package without this submodule: the ordinary error
            where = parent._bn_where
        else:
            where = self._importer()
            if where is None or self._guarded(*where):
                return None
        spec = importlib.machinery.ModuleSpec(name, _LOADER, is_package=True)
        spec.loader_state = (where, self)
        return spec


def _catches(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types_ = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any((t.id if isinstance(t, ast.Name) else getattr(t, "attr", None)) in GUARDS for t in types_)


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        where, finder = spec.loader_state
        return _PlaceholderModule(spec.name, where, finder)

    def exec_module(self, module):
        pass


_LOADER = _Loader()


class _PlaceholderModule(types.ModuleType):
    def __init__(self, name, where, finder):
        super().__init__(name, f"placeholder: {name.partition('.')[0]} is not installed where submissions are graded")
        self._bn_where = where
        self._bn_finder = finder

    def __getattr__(self, attr):
        # dunders stay absent: `from x import *` looks for __all__, pickling for __reduce__, ...
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return _Missing(f"{self.__name__}.{attr}", self._bn_where, self._bn_finder)

    def __repr__(self):
        return f"<placeholder for {self.__name__}: not installed>"


def _shown(path: str, where, finder) -> tuple[str, int]:
    """(the path as the student spells it, the line of that import): `plt.show` for
    matplotlib.pyplot.show where a line says `import matplotlib.pyplot as plt`."""
    filename, line = where
    tree = finder.tree(filename)
    if tree is None:
        return path, line
    best = ("", "", line)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            pairs = [(a.name, a.asname) for a in node.names if a.asname]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            pairs = [(f"{node.module}.{a.name}", a.asname or a.name) for a in node.names]
        else:
            continue
        for full, alias in pairs:
            if (path == full or path.startswith(full + ".")) and len(full) > len(best[0]):
                best = (full, alias, node.lineno)
    return (best[1] + path[len(best[0]):] if best[0] else path), best[2]


class _Missing:
    """A name taken from a placeholder: free to hold, an error to use."""
    __slots__ = ("_bn_path", "_bn_where", "_bn_finder")

    def __init__(self, path, where, finder):
        object.__setattr__(self, "_bn_path", path)
        object.__setattr__(self, "_bn_where", where)
        object.__setattr__(self, "_bn_finder", finder)

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return _Missing(f"{self._bn_path}.{attr}", self._bn_where, self._bn_finder)

    def __repr__(self):
        return f"<placeholder for {self._bn_path}: not installed>"

    def _fail(self, *args, **kwargs):
        filename, _ = self._bn_where
        package = self._bn_path.partition(".")[0]
        shown, line = _shown(self._bn_path, self._bn_where, self._bn_finder)
        used = shown if shown == self._bn_path else f"{shown} ({self._bn_path})"
        # the student's frame that used it: the nearest one in the importing file
        f = sys._getframe(1)
        while f is not None and os.path.abspath(f.f_code.co_filename) != os.path.abspath(filename):
            f = f.f_back
        if f is not None:
            scope = getattr(f.f_code, "co_qualname", f.f_code.co_name)
            site_ = f"line {f.f_lineno}" + ("" if scope == "<module>" else f" (in {scope})")
        else:
            site_ = "your code"
        raise PackageNotInstalled(
            f"{package} is not installed where your code is graded (only torch and the standard library "
            f"are): line {line} imports it, and {site_} uses {used}. Write that part with torch, or leave "
            f"it out of BatchNorm2d", name=package)

    # every way of using a value, so that the first use names itself
    __call__ = __iter__ = __len__ = __bool__ = __index__ = __int__ = __float__ = __complex__ = _fail
    __getitem__ = __setitem__ = __delitem__ = __contains__ = __enter__ = __exit__ = __await__ = _fail
    __instancecheck__ = __subclasscheck__ = __mro_entries__ = __fspath__ = __format__ = _fail
    __neg__ = __pos__ = __abs__ = __invert__ = __lt__ = __le__ = __gt__ = __ge__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __matmul__ = __rmatmul__ = _fail
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _fail
    __pow__ = __rpow__ = __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = _fail

    def __setattr__(self, attr, value):
        self._fail()
