"""Slicing a submission down to what its BatchNorm2d needs (parent process; parses with ast,
never imports or runs student code).

Owns `slice_source` (text in, text out), `slice_bytes` (a file's bytes, its coding cookie
honoured) and `stage` (the sliced copy the sandbox is given). The sliced source keeps the
binding(s) of BatchNorm2d and, transitively, every module-level statement they use: helpers,
constants, imports, decorators, default arguments, base classes, names bound under `if`/`try`/
`with`, and functions that assign a used name through `global`. Everything else (training and
plotting code, `if __name__ == "__main__":` blocks, prints, unrelated classes) becomes blank
lines, so every line number is the original's. Imports of torch, `from __future__` and star
imports are always kept, as are the few top-level calls that configure torch for the whole file
(`torch.set_default_dtype`, ...).

Binding analysis follows Python's order: a name used while a statement runs (a default argument,
a base class) needs the bindings before that statement; a name used inside a function needs the
binding that holds when the module has finished loading. When a statement cannot be analysed
it is kept. A source that does not parse is returned unchanged, for the sandbox to report.
"""
from __future__ import annotations

import ast
import builtins
import io
import re
import tokenize
from dataclasses import dataclass, field

MB = 1_000_000
MAX_SOURCE = 1 * MB
ROOT = "BatchNorm2d"
# top-level calls that change how the layer computes, wherever they are in the file
CONFIG_CALLS = {"torch.set_default_dtype", "torch.set_default_tensor_type", "torch.set_default_device",
                "torch.manual_seed", "warnings.filterwarnings", "warnings.simplefilter"}
# a used name bound by none of the statements may be made by these
DYNAMIC = {"exec", "eval", "globals", "vars", "setattr", "locals", "__import__"}
MODULE_NAMES = set(dir(builtins)) | {"__name__", "__file__", "__doc__", "__spec__", "__loader__", "__package__",
                                     "__builtins__", "__annotations__", "__cached__", "__path__"}
COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=]")
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
COMPS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
PRUNABLE = (ast.If, ast.Try, ast.With) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())


class TooLarge(ValueError):
    """The submission is larger than MAX_SOURCE; the message is the reason, one line."""


@dataclass
class Slice:
    text: str
    changed: bool = False
    # first lines of the top-level statements left out that would have run code
    not_run: list[int] = field(default_factory=list)


# -- names a statement uses and binds ------------------------------------------------------

class _Scope:
    """One scope's names, nested scopes left for later (their default arguments, decorators and
    base classes are this scope's)."""

    def __init__(self):
        self.loads, self.stores, self.globals, self.nonlocals, self.calls = set(), set(), set(), set(), set()
        self.nested = []  # (kind, node)

    def visit(self, root):
        stack = [root]
        while stack:
            n = stack.pop()
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.stores.add(n.name)
                stack.extend(n.decorator_list)
                stack.append(n.args)
                if n.returns is not None:
                    stack.append(n.returns)
                self.nested.append(("function", n))
            elif isinstance(n, ast.Lambda):
                stack.append(n.args)
                self.nested.append(("function", n))
            elif isinstance(n, ast.ClassDef):
                self.stores.add(n.name)
                stack.extend(n.decorator_list + n.bases + n.keywords)
                self.nested.append(("class", n))
            elif isinstance(n, COMPS):
                stack.append(n.generators[0].iter)  # the first iterable runs in this scope
                self.nested.append(("comp", n))
            elif isinstance(n, ast.Name):
                (self.loads if isinstance(n.ctx, ast.Load) else self.stores).add(n.id)
            elif isinstance(n, ast.Global):
                self.globals.update(n.names)
            elif isinstance(n, ast.Nonlocal):
                self.nonlocals.update(n.names)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                self.stores.update(a.asname or a.name.split(".")[0] for a in n.names if a.name != "*")
            else:
                if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
                    self.loads.add(n.target.id)  # x += 1 reads x
                elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
                    self.calls.add(n.func.id)
                elif isinstance(n, ast.ExceptHandler) and n.name:
                    self.stores.add(n.name)
                elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
                    self.stores.add(n.name)
                elif isinstance(n, ast.MatchMapping) and n.rest:
                    self.stores.add(n.rest)
                stack.extend(ast.iter_child_nodes(n))


@dataclass
class _Uses:
    now: set = field(default_factory=set)  # global names read while the statement runs
    later: set = field(default_factory=set)  # global names read by functions it defines
    global_writes: set = field(default_factory=set)  # names its functions assign through `global`
    calls: set = field(default_factory=set)  # plain names called while it runs


def _params(fn) -> set:
    a = fn.args
    names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    names.update(x.arg for x in (a.vararg, a.kwarg) if x is not None)
    return names


def _resolve(kind, node, chain, deferred, out: _Uses) -> None:
    """Add the global names `node`'s scope reads to out. chain: the enclosing functions' locals."""
    sc = _Scope()
    params = set()
    if kind == "module":
        sc.visit(node)
    elif kind == "class":
        for s in node.body:
            sc.visit(s)
    elif kind == "function":
        params = _params(node)
        for s in (node.body if isinstance(node.body, list) else [node.body]):
            sc.visit(s)
    else:  # a comprehension: its targets are its own
        for i, g in enumerate(node.generators):
            sc.visit(g.target)
            for cond in g.ifs:
                sc.visit(cond)
            if i:
                sc.visit(g.iter)
        for part in ("elt", "key", "value"):
            if getattr(node, part, None) is not None:
                sc.visit(getattr(node, part))
    local = set() if kind == "module" else (sc.stores | params) - sc.globals - sc.nonlocals
    target = out.later if deferred else out.now
    for name in sc.loads | (sc.globals & sc.stores):
        if name in sc.globals or (name not in local and not any(name in s for s in chain)):
            target.add(name)
    if kind == "function":
        out.global_writes |= sc.globals & sc.stores
    if not deferred and kind == "module":
        out.calls |= sc.calls
    # a class's own names are invisible to the scopes nested in it
    inner = chain if kind in ("module", "class") else chain + [local]
    for k, n in sc.nested:
        _resolve(k, n, inner, deferred or k == "function", out)


def _uses(stmt) -> _Uses:
    out = _Uses()
    _resolve("module", stmt, [], False, out)
    return out


def _binds(stmt) -> set:
    sc = _Scope()
    sc.visit(stmt)
    return sc.stores


def _root(node):
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id] + parts[::-1]) if isinstance(node, ast.Name) else None


def _mutations(stmt) -> tuple[set, set]:
    """(names whose object the statement changes through an attribute or item assignment,
    names it calls a method on): `CONFIG["eps"] = 1e-3`, `BatchNorm2d.forward = f`, `LOG.append(x)`."""
    assigned, called = set(), set()
    stack = [stmt]
    while stack:
        n = stack.pop()
        if isinstance(n, SCOPES):
            continue  # runs later, if ever
        targets = []
        if isinstance(n, ast.Assign):
            targets = n.targets
        elif isinstance(n, (ast.AugAssign, ast.AnnAssign)):
            targets = [n.target]
        elif isinstance(n, ast.Delete):
            targets = n.targets
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, (ast.Attribute, ast.Subscript)) and isinstance(sub.ctx, (ast.Store, ast.Del)):
                    assigned.add(_root(sub))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            called.add(_root(n.func))
        stack.extend(ast.iter_child_nodes(n))
    return assigned - {None}, called - {None}


def _is_main_guard(stmt) -> bool:
    t = getattr(stmt, "test", None)
    if not isinstance(stmt, ast.If) or not isinstance(t, ast.Compare) or len(t.ops) != 1:
        return False
    sides = [t.left, t.comparators[0]]
    return (isinstance(t.ops[0], ast.Eq) and any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def _first(stmt) -> int:
    return min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])


@dataclass
class _Stmt:
    node: ast.stmt
    first: int
    last: int
    binds: set
    definite: set  # names it binds unconditionally: earlier bindings of them are dead after it
    assigned: set  # objects changed through attribute/item assignment
    called: set  # objects a method is called on
    uses: _Uses
    always: bool = False
    main: bool = False
    header: _Uses | None = None  # for a prunable compound: what its own lines use
    bodies: list | None = None  # for a prunable compound: its blocks of _Stmt


def _header_uses(node) -> tuple[_Uses, set]:
    out, binds = _Uses(), set()
    if isinstance(node, ast.If):
        exprs = [node.test]
    elif isinstance(node, ast.With):
        exprs = [i.context_expr for i in node.items]
        for i in node.items:
            if i.optional_vars is not None:
                exprs.append(i.optional_vars)
                binds |= _binds(i.optional_vars)
    else:
        exprs = [h.type for h in node.handlers if h.type is not None]
        binds |= {h.name for h in node.handlers if h.name}
    for e in exprs:
        u = _uses(e)
        out.now |= u.now
        out.later |= u.later
        out.calls |= u.calls
    return out, binds


def _blocks(node) -> list:
    if isinstance(node, (ast.If, ast.With)):
        return [b for b in (node.body, getattr(node, "orelse", [])) if b]
    return [b for b in [node.body] + [h.body for h in node.handlers] + [node.orelse, node.finalbody] if b]


def _starts_line(s, lines) -> bool:
    """Nothing but indentation before the statement on its first line (col_offset counts bytes)."""
    col = s.col_offset if not getattr(s, "decorator_list", None) else s.decorator_list[0].col_offset - 1
    return lines[_first(s) - 1].encode("utf-8", "surrogatepass")[:col].strip() == b""


def _separate(node, blocks, lines) -> bool:
    """Every statement of every block on lines of its own (not after `if x:`, `else:` or a `;`):
    they can be blanked one by one."""
    for block in blocks:
        for a, b in zip(block, block[1:] + [None]):
            if not _starts_line(a, lines) or (b is not None and _first(b) <= a.end_lineno):
                return False
    return True


def _info(stmt, aliases, lines) -> _Stmt:
    assigned, called = _mutations(stmt)
    s = _Stmt(stmt, _first(stmt), stmt.end_lineno, set(), set(), assigned, called, _uses(stmt))
    if isinstance(stmt, ast.ImportFrom):
        star = any(a.name == "*" for a in stmt.names)
        s.always = star or stmt.module == "__future__" or (stmt.level == 0 and (stmt.module or "").split(".")[0] == "torch")
    elif isinstance(stmt, ast.Import):
        s.always = all(a.name.split(".")[0] == "torch" for a in stmt.names)
    elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        name = _dotted(stmt.value.func)
        if name:
            head, _, rest = name.partition(".")
            s.always = (aliases.get(head, head) + ("." + rest if rest else "")) in CONFIG_CALLS
    if _is_main_guard(stmt):
        s.main = True  # never runs when the grader imports the file
        return s
    s.binds = _binds(stmt)
    if isinstance(stmt, ast.AnnAssign) and stmt.value is None:
        s.binds = set()  # `x: int` binds nothing
    if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.Import, ast.ImportFrom, ast.FunctionDef,
                         ast.AsyncFunctionDef, ast.ClassDef)):
        s.definite = set(s.binds)
    if isinstance(stmt, PRUNABLE):
        blocks = _blocks(stmt)
        if _separate(stmt, blocks, lines):
            s.header, hb = _header_uses(stmt)
            s.binds |= hb
            s.bodies = [[_info(x, aliases, lines) for x in block] for block in blocks]
    return s


def _aliases(tree) -> dict:
    """Local name -> module path, from the file's top-level imports (for CONFIG_CALLS)."""
    out = {}
    for n in tree.body:
        if isinstance(n, ast.Import):
            for a in n.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            for a in n.names:
                out[a.asname or a.name] = f"{n.module}.{a.name}"
    return out


# -- what is kept ------------------------------------------------------------------------

class _Slicer:
    def __init__(self, stmts: list[_Stmt]):
        self.stmts = stmts
        self.wanted = {}  # index -> names it was kept for
        self.done = set()  # (name, position) demands already followed
        self.todo = []  # (name, position) demands to follow; a list, not recursion: long files
        self.unresolved = set()
        # names bound by an assignment (not an import, a def or a module alias): a method call
        # on them may change what the layer reads, `CONSTANTS.append(...)`
        self.variables = set()
        for s in stmts:
            if isinstance(s.node, (ast.Assign, ast.AnnAssign)) and not _is_alias(s.node):
                self.variables |= s.binds
        # a call to a function that assigns a global binds that global, maybe
        writers = {}
        for s in stmts:
            if isinstance(s.node, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.uses.global_writes:
                writers.setdefault(s.node.name, set()).update(s.uses.global_writes)
        for s in stmts:
            for f in s.uses.calls:
                s.binds = s.binds | writers.get(f, set())

    def changes(self, s: _Stmt, name: str) -> bool:
        return name in s.binds or name in s.assigned or (name in s.called and name in self.variables)

    def run(self) -> set:
        for i, s in enumerate(self.stmts):
            if s.always:
                self.keep(i, set())
        self.todo.append((ROOT, len(self.stmts)))
        self.follow()
        if self.unresolved - MODULE_NAMES:
            # a used name nothing binds: exec, globals() or setattr may make it, keep those
            for i, s in enumerate(self.stmts):
                if s.uses.calls & DYNAMIC and not s.main:
                    self.keep(i, set())
            self.follow()
        return set(self.wanted)

    def follow(self) -> None:
        while self.todo:
            name, pos = self.todo.pop()
            if (name, pos) in self.done:
                continue
            self.done.add((name, pos))
            found = False
            for j in range(pos - 1, -1, -1):
                s = self.stmts[j]
                if s.main or not self.changes(s, name):
                    continue
                found = True
                self.keep(j, {name})
                if name in s.definite:
                    break
            if not found:
                self.unresolved.add(name)

    def keep(self, i: int, names: set) -> None:
        if i in self.wanted and names <= self.wanted[i]:
            return
        self.wanted[i] = self.wanted.get(i, set()) | names
        uses = self.uses(self.stmts[i], self.wanted[i])
        self.todo.extend((n, i) for n in uses.now)
        self.todo.extend((n, len(self.stmts)) for n in uses.later)

    def expand(self, s: _Stmt, names: set) -> set:
        """names, and the names that the parts of compound s kept for them use and s binds."""
        while s.bodies is not None:
            u = self._pruned(s, names)
            more = (u.now | u.later) & s.binds - names
            if not more:
                break
            names = names | more
        return names

    def uses(self, s: _Stmt, names: set) -> _Uses:
        return s.uses if s.bodies is None else self._pruned(s, self.expand(s, names))

    def _pruned(self, s: _Stmt, names: set) -> _Uses:
        out = _Uses(set(s.header.now), set(s.header.later))
        for block in s.bodies:
            for inner in block:
                if self.inner_kept(inner, names):
                    u = self.uses(inner, names)
                    out.now |= u.now
                    out.later |= u.later
        return out

    def inner_kept(self, s: _Stmt, names: set) -> bool:
        return not s.main and (s.always or any(self.changes(s, n) for n in names))


def _is_alias(node) -> bool:
    # nn = torch.nn: an alias of a module, not a container of the student's
    value = getattr(node, "value", None)
    return isinstance(value, (ast.Name, ast.Attribute))


# -- the sliced text -----------------------------------------------------------------------

def _lines(text: str) -> list[str]:
    return io.StringIO(text, newline="").readlines()  # the parser's lines: no \u2028 or \f splits


def _blank_inner(out, lines, s: _Stmt, names: set, slicer: _Slicer) -> None:
    """Blank the statements of a kept compound that are not needed, a `pass` where each began."""
    if s.bodies is None:
        return
    names = slicer.expand(s, names)
    for block in s.bodies:
        for inner in block:
            if slicer.inner_kept(inner, names):
                _blank_inner(out, lines, inner, names, slicer)
                continue
            for k in range(inner.first, inner.last + 1):
                out[k - 1] = "\n"
            line = lines[inner.first - 1]
            out[inner.first - 1] = line[:len(line) - len(line.lstrip())] + "pass\n"


def _runs_code(s: _Stmt) -> bool:
    n = s.node
    if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Pass,
                      ast.Global, ast.Nonlocal)):
        return False
    if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant):
        return False
    if isinstance(n, (ast.Assign, ast.AnnAssign)):
        return any(isinstance(x, (ast.Call, ast.Await)) for x in ast.walk(n))
    return True


def slice_source(text: str) -> str:
    return plan(text).text


def plan(text: str) -> Slice:
    """The sliced source and what was left out; raises TooLarge over MAX_SOURCE."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE:
        raise TooLarge(too_large(len(text.encode("utf-8", "surrogatepass"))))
    try:
        tree = ast.parse(text)
        return _plan(text, tree)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return Slice(text)  # the sandbox reports it, with the student's line


def _plan(text: str, tree) -> Slice:
    aliases = _aliases(tree)
    lines = _lines(text)
    stmts = [_info(s, aliases, lines) for s in tree.body]
    slicer = _Slicer(stmts)
    kept = slicer.run()
    # comments and blank lines between statements stay; every statement's lines start blank
    out = list(lines)
    for s in stmts:
        out[s.first - 1:s.last] = ["\n"] * (s.last - s.first + 1)
    # statements sharing a line (`import torch; net = train()`): rewritten when only some stay
    for i in sorted(kept):
        s = stmts[i]
        out[s.first - 1:s.last] = lines[s.first - 1:s.last]
        _blank_inner(out, lines, s, slicer.wanted[i], slicer)
    for group in _shared(stmts):
        mine = [i for i in group if i in kept]
        if mine and len(mine) < len(group):
            parts = [ast.unparse(stmts[i].node) for i in mine]
            a, b = stmts[group[0]].first, max(stmts[i].last for i in group)
            if all("\n" not in p for p in parts):
                out[a - 1:b] = ["; ".join(parts) + "\n"] + ["\n"] * (b - a)
    for k, line in enumerate(lines):
        if line.endswith(("\n", "\r")) is False and out[k] == "\n":
            out[k] = ""  # no newline where the file had none: the last line
    sliced = "".join(out)
    not_run = [s.first for i, s in enumerate(stmts) if i not in kept and _runs_code(s)]
    if sliced == text:
        return Slice(text)
    try:
        check = ast.parse(sliced)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return Slice(text)  # a slicer bug must not cost the student: run the file as it is
    if _binds_root(tree) and not _binds_root(check):
        return Slice(text)
    return Slice(sliced, True, not_run)


def _binds_root(tree) -> bool:
    return any(ROOT in _binds(s) for s in tree.body)


def _shared(stmts) -> list[list[int]]:
    groups, cur = [], []
    for i, s in enumerate(stmts):
        if cur and s.first <= stmts[cur[-1]].last:
            cur.append(i)
        else:
            if len(cur) > 1:
                groups.append(cur)
            cur = [i]
    if len(cur) > 1:
        groups.append(cur)
    return groups


def too_large(n: int) -> str:
    return (f"the submission is larger than {MAX_SOURCE // MB} MB ({n / MB:.1f} MB), the most the grader reads; "
            "a BatchNorm2d takes a few kB: leave out data and outputs")


def slice_bytes(raw: bytes) -> tuple[bytes, Slice]:
    """The file's bytes sliced, as UTF-8; unchanged when it does not decode or parse."""
    if len(raw) > MAX_SOURCE:
        raise TooLarge(too_large(len(raw)))
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        text = raw.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError):
        return raw, Slice("")
    got = plan(text)
    if not got.changed and encoding in ("utf-8", "utf-8-sig"):
        return raw, got
    # UTF-8 always, whatever the file declared: the sandbox reads the slice as UTF-8, and a
    # coding cookie left in a comment would now lie about the encoding
    data = got.text.encode("utf-8", "surrogatepass")
    head = data.split(b"\n", 2)
    for k in range(min(2, len(head) - 1)):
        if COOKIE.match(head[k]):
            head[k] = b""
    return b"\n".join(head), got


def note(got: Slice) -> str:
    """One line for the report when top-level code was left out, else ''."""
    if not got.not_run:
        return ""
    n = len(got.not_run)
    return (f"only BatchNorm2d and what it uses were loaded: {n} top-level statement{'s' if n > 1 else ''} "
            f"that run code (training, plotting, tests; the first at line {got.not_run[0]}) did not run")
