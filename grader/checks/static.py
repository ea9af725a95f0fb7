"""Source scan of a submission (parent process; parses, never executes).

Owns two kinds of evidence, both taken from the text the grader holds, so nothing the
submission does at run time can erase them:

- `scan()`: torch's built-in normalisation. The run-time recorder in the sandbox is the
  authority on what the code did; this scan catches what a run may not reach and names the
  line. It resolves import aliases (`from torch.nn import functional as G` -> G.batch_norm is
  torch.nn.functional.batch_norm), string-built names in getattr/__import__, and follows the
  BatchNorm2d class into the module-level functions and classes it uses. Uses outside that
  reach, say a comparison with nn.BatchNorm2d under `if __name__ == "__main__":`, are notes,
  not violations. A violation costs points (grader/scoring.py).
- `review()`: integrity flags for the instructor, never points. Code that can switch off or
  hide from the run-time recorder (private torch internals, the torch-function mode stack,
  frame and object walking, ctypes, TorchScript/torch.compile, dynamic imports and lookups,
  patching torch/sys/builtins) and a layer copied from reference/batchnorm.py are "needs
  review"; a layer that follows the textbook is listed for information (allowed in this
  course). Each flag carries its evidence as file name, line and the line's text.
"""
import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

from grader import similarity

BANNED = ("batch_norm", "batchnorm", "layer_norm", "layernorm", "group_norm", "groupnorm",
          "instance_norm", "instancenorm", "rms_norm", "rmsnorm")


# switching torch's function hooks off hides a call from the run-time recorder: no BatchNorm
# homework needs it
EVASIONS = ("disabletorchfunction", "disable_torch_function", "_disabled_torch_function_impl")
LOOKUPS = ("getattr", "hasattr", "__import__", "import_module", "get")


def _banned(name: str) -> bool:
    n = name.lower()
    return any(b in n for b in BANNED + EVASIONS)


@dataclass
class Finding:
    line: int
    text: str
    in_class: bool  # reachable from BatchNorm2d: a violation; else a note


class _Scanner(ast.NodeVisitor):
    def __init__(self):
        self.aliases = {}  # local name -> dotted torch path
        self.hits = []  # (node, text)
        self.defined = set()

    def visit_Import(self, node):
        for a in node.names:
            if a.name.split(".")[0] == "torch":
                self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                if _banned(a.name):
                    self.hits.append((node, f"import {a.name}"))

    def visit_ImportFrom(self, node):
        mod = node.module or ""
        if mod.split(".")[0] != "torch":
            return
        for a in node.names:
            full = f"{mod}.{a.name}"
            self.aliases[a.asname or a.name] = full
            if _banned(a.name):
                self.hits.append((node, f"from {mod} import {a.name}"))

    def _dotted(self, node):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            parts.append(node.id)
            parts.reverse()
            head = self.aliases.get(parts[0])
            return ".".join([head] + parts[1:]) if head else ".".join(parts)
        return None

    def visit_Attribute(self, node):
        if _banned(node.attr):
            dotted = self._dotted(node)
            if dotted is None or dotted.startswith("torch") or node.attr not in self.defined:
                self.hits.append((node, dotted or f"....{node.attr}"))
        self.generic_visit(node)

    def visit_Name(self, node):
        full = self.aliases.get(node.id)
        if full and _banned(full.split(".")[-1]) and isinstance(node.ctx, ast.Load):
            self.hits.append((node, f"{node.id} (= {full})"))

    def visit_Call(self, node):
        # getattr(F, "batch_norm"), __import__("torch.nn.modules.batchnorm"): a string only
        # counts where it names something to look up, so `self.kind = "batch_norm"` or an error
        # message is not a finding; split names ("batch_" + "norm") are left to the run-time
        # recorder
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name in LOOKUPS:
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _banned(arg.value) \
                        and arg.value != "BatchNorm2d":
                    self.hits.append((arg, f"{name}(..., {arg.value!r})"))
        self.generic_visit(node)


def _defined_names(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def _reach(tree):
    """Line spans of the BatchNorm2d class and the module-level defs it uses, transitively."""
    top = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            top[node.name] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    top.setdefault(t.id, node)
    todo, seen = ["BatchNorm2d"], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in top:
            continue
        seen.add(name)
        for n in ast.walk(top[name]):
            if isinstance(n, ast.Name):
                todo.append(n.id)
    return [(top[n].lineno, top[n].end_lineno) for n in seen]


def _strip_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body[0] = ast.Pass()


def scan(source: str) -> list[Finding]:
    """Findings, or [] when the source does not parse (the sandbox will report the error) or is
    nested too deeply to walk (review() flags that file as unscannable)."""
    try:
        return _scan(source)
    except RecursionError:
        return []


def _scan(source):
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    _strip_docstrings(tree)
    sc = _Scanner()
    sc.defined = _defined_names(tree)
    # aliases are file-wide: imports first, so a use above a late import still resolves
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            sc.visit_Import(node)
        elif isinstance(node, ast.ImportFrom):
            sc.visit_ImportFrom(node)
    sc.visit(tree)
    spans = _reach(tree)
    out, seen = [], set()
    for node, text in sc.hits:
        key = (node.lineno, text)
        if key in seen:
            continue
        seen.add(key)
        inside = any(a <= node.lineno <= b for a, b in spans)
        out.append(Finding(node.lineno, text, inside))
    return sorted(out, key=lambda f: f.line)


# ---------------------------------------------------------------------------- integrity review

NEEDS_REVIEW, INFO = "needs_review", "info"

# code -> (severity, message in both languages); order = the order flags are listed in
REVIEW = {
    "mode_stack": (NEEDS_REVIEW, {
        "en": "Touches torch's function/dispatch mode stack or defines torch-function hooks: this can switch "
              "off the grader's run-time detector of built-in normalisation",
        "zh": "操作了 torch 的 function/dispatch mode 栈或定义了 torch-function 钩子：可以关闭评分器对内置归一化的运行时检测"}),
    "introspection": (NEEDS_REVIEW, {
        "en": "Walks interpreter frames or live objects (sys._getframe, inspect frames, gc.get_objects, "
              "f_globals, __subclasses__, ...): this can reach and change the grader's code in the worker",
        "zh": "遍历解释器栈帧或存活对象（sys._getframe、inspect 栈帧、gc.get_objects、f_globals、__subclasses__ 等）："
              "可以找到并修改工作进程中评分器的代码"}),
    "torch_internals": (NEEDS_REVIEW, {
        "en": "Uses private torch internals (torch._C, torch._decomp, torch._refs, torch.ops, ...): they hold "
              "ready-made normalisation the run-time detector does not see",
        "zh": "使用了 torch 的私有内部接口（torch._C、torch._decomp、torch._refs、torch.ops 等）：其中有现成的归一化实现，运行时检测看不到"}),
    "compiled": (NEEDS_REVIEW, {
        "en": "Compiles or scripts code (torch.jit, torch.compile, torch.fx, custom ops): the run-time "
              "detector does not see inside compiled code",
        "zh": "编译或脚本化代码（torch.jit、torch.compile、torch.fx、自定义算子）：运行时检测看不到编译后代码的内部"}),
    "native_code": (NEEDS_REVIEW, {
        "en": "Loads native code or reads raw memory (ctypes, cffi)",
        "zh": "加载本地代码或直接读写内存（ctypes、cffi）"}),
    "dynamic_code": (NEEDS_REVIEW, {
        "en": "Runs code built at run time (exec, eval, compile, code objects): the source scan cannot read it",
        "zh": "运行在运行时构造的代码（exec、eval、compile、代码对象）：源码扫描无法读取"}),
    "dynamic_import": (NEEDS_REVIEW, {
        "en": "Imports a module whose name is computed at run time, or loads one by hand (importlib, "
              "__import__, runpy)",
        "zh": "导入名字在运行时才确定的模块，或手动加载模块（importlib、__import__、runpy）"}),
    "dynamic_lookup": (NEEDS_REVIEW, {
        "en": "Looks up a name of torch, sys or builtins with a string computed at run time",
        "zh": "用运行时计算出的字符串查找 torch、sys 或 builtins 中的名字"}),
    "sys_modules": (NEEDS_REVIEW, {
        "en": "Reads or changes sys.modules (the table of loaded modules, the grader's among them)",
        "zh": "读取或修改 sys.modules（已加载模块表，其中包括评分器的模块）"}),
    "patching": (NEEDS_REVIEW, {
        "en": "Replaces something in torch, sys or builtins at run time",
        "zh": "在运行时替换 torch、sys 或 builtins 中的内容"}),
    "unscannable": (NEEDS_REVIEW, {
        "en": "The source is nested too deeply for the source scan to read: nothing in it could be checked",
        "zh": "源码嵌套过深，源码扫描无法读取：其中的内容都未能检查"}),
    "copy_of_reference": (NEEDS_REVIEW, {
        "en": "The BatchNorm2d layer (with the helpers it uses) is a near copy of the grader's reference "
              "implementation",
        "zh": "BatchNorm2d 层（及其调用的辅助函数）几乎是评分器参考实现的副本"}),
    "textbook_copy": (INFO, {
        "en": "The layer follows the textbook's batch_norm function and BatchNorm class (d2l); allowed in this "
              "course, listed for information only",
        "zh": "该层沿用了教材（d2l《动手学深度学习》）的 batch_norm 函数和 BatchNorm 类；本课程允许，仅供参考"}),
}

MAX_EVIDENCE = 12  # per flag: enough to judge, not a listing of the whole file
TEXT_CHARS = 160

# (sys.exc_info and a traceback are ordinary error handling: its tb_frame is what leads on)
_FRAME_WALK = ("sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile",
               "inspect.currentframe", "inspect.stack", "inspect.trace", "inspect.getouterframes",
               "inspect.getinnerframes", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
               "threading.settrace", "threading.setprofile", "traceback.walk_stack", "traceback.walk_tb")
# attributes that lead from any object to frames, globals or code, whatever the object's name
_FRAME_ATTRS = {"f_back", "f_globals", "f_locals", "f_builtins", "tb_frame", "gi_frame", "cr_frame", "ag_frame",
                "__globals__", "__closure__", "cell_contents", "__code__", "__subclasses__"}
_MODE_RE = re.compile(r"torch_?function_?mode|dispatch_?mode|mode_stack|_(pop|push)_mode|function_stack|"
                      r"disable_?torch_?function|python_dispatch|__torch_(function|dispatch)__")
_COMPILED = ("torch.jit", "torch.compile", "torch._dynamo", "torch._inductor", "torch.export", "torch.fx",
             "torch.library", "torch._lazy", "torch.utils.cpp_extension")
_NATIVE = ("ctypes", "_ctypes", "cffi")
_DYNAMIC_CODE = ("types.FunctionType", "types.CodeType", "types.LambdaType", "marshal")
_LOADERS = ("importlib.util", "importlib.machinery", "importlib.reload", "importlib.abc", "runpy", "zipimport")
# modules whose attributes, when replaced or looked up by a computed name, can hide a call
_GUARDED = ("torch", "sys", "builtins", "gc", "inspect", "importlib", "ctypes", "types")
_HOOK_METHODS = ("__torch_function__", "__torch_dispatch__")


def _under(path, prefixes):
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def classify(path: str) -> str | None:
    """The review code of a resolved dotted name (`torch._refs.var`, `sys._getframe`), or None."""
    parts = path.split(".")
    if parts[0] in _NATIVE:
        return "native_code"
    if _under(path, _FRAME_WALK):
        return "introspection"
    if _under(path, ("sys.modules",)):
        return "sys_modules"
    if _under(path, _DYNAMIC_CODE):
        return "dynamic_code"
    if _under(path, _LOADERS):
        return "dynamic_import"
    if parts[0] != "torch":
        return None
    if _MODE_RE.search(path.lower()):
        return "mode_stack"
    if _under(path, _COMPILED):
        return "compiled"
    if (len(parts) > 1 and parts[1] == "ops") or any(
            p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts[1:]):
        return "torch_internals"
    return None


def _folded(node):
    """The value of a string expression built from literals ("_get" + "frame", f"{'_C'}",
    "".join([...])), or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        a, b = _folded(node.left), _folded(node.right)
        return a + b if a is not None and b is not None else None
    if isinstance(node, ast.JoinedStr):
        parts = [_folded(v.value) if isinstance(v, ast.FormattedValue) else _folded(v) for v in node.values]
        return "".join(parts) if all(p is not None for p in parts) else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join" \
            and len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple)):
        sep, parts = _folded(node.func.value), [_folded(e) for e in node.args[0].elts]
        return sep.join(parts) if sep is not None and all(p is not None for p in parts) else None
    return None


class _Review(ast.NodeVisitor):
    def __init__(self, own):
        self.own = own  # names the file defines itself: its own `compile` is not the builtin
        self.aliases = {"__builtins__": "builtins"}
        self.hits = []  # (code, line, what)

    # -- names

    def path(self, node):
        """The dotted module path an expression stands for, or None: aliases, attribute chains,
        getattr/vars/__dict__ with literal strings, __import__/import_module with literal names."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            if node.attr == "__dict__":
                return self.path(node.value)
            base = self.path(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Subscript):
            # sys.modules["torch._C"], vars(torch)["_C"], torch.__dict__["_C"]
            key = _folded(node.slice)
            base = self.path(node.value)
            if key is None or base is None:
                return None
            return key if base == "sys.modules" else f"{base}.{key}"
        if isinstance(node, ast.Call):
            f = node.func
            fname = f.id if isinstance(f, ast.Name) and f.id not in self.own else None
            if fname == "vars" and len(node.args) == 1:
                return self.path(node.args[0])
            if fname == "getattr" and len(node.args) >= 2:
                key = _folded(node.args[1])
                base = self.path(node.args[0])
                return f"{base}.{key}" if key is not None and base else None
            if (fname == "__import__" or self.path(f) in ("importlib.import_module", "builtins.__import__")) \
                    and node.args:
                return _folded(node.args[0])
        return None

    def learn_aliases(self, nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if a.name != "*":
                        self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        # `T = torch`, `F = torch.nn.functional`, `frame = getattr(sys, "_getframe")`: file-wide,
        # ignoring flow, so only for a name bound once in the whole file (a local `m` elsewhere
        # is not the module); twice, so an alias of an alias resolves
        bound = {}
        for node in nodes:
            names = [node.id] if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load) else \
                [node.arg] if isinstance(node, ast.arg) else \
                [node.name] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else \
                [node.name] if isinstance(node, ast.ExceptHandler) and node.name else []
            for n in names:
                bound[n] = bound.get(n, 0) + 1
        assigns = [n for n in nodes if isinstance(n, (ast.Assign, ast.AnnAssign, ast.NamedExpr))]
        for _ in range(2):
            for node in assigns:
                if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                    p = self.path(node.value)
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for t in targets:
                        if p and isinstance(t, ast.Name) and bound.get(t.id) == 1:
                            self.aliases.setdefault(t.id, p)

    def hit(self, code, node, what):
        self.hits.append((code, node.lineno, what))

    # -- visits

    def visit_Import(self, node):
        for a in node.names:
            code = classify(a.name)
            if code:
                self.hit(code, node, f"import {a.name}")

    def visit_ImportFrom(self, node):
        mod = node.module or ""
        if node.level:
            return
        code = classify(mod)
        if code:
            self.hit(code, node, f"from {mod} import ...")
            return
        for a in node.names:
            code = classify(f"{mod}.{a.name}") if a.name != "*" else None
            if code:
                self.hit(code, node, f"{mod}.{a.name}")

    def _name_like(self, node):
        # one flag per chain, for its longest resolvable part: torch._C._pop_torch_function_stack
        # is mode_stack, not also torch_internals for its torch._C prefix
        p = self.path(node)
        code = classify(p) if p else None
        if code:
            self.hit(code, node, p)
            return True
        return False

    def visit_Attribute(self, node):
        if node.attr in _FRAME_ATTRS:
            self.hit("introspection", node, f"....{node.attr}")
        elif node.attr in _HOOK_METHODS:
            self.hit("mode_stack", node, f"....{node.attr}")
        if self._name_like(node):
            self._visit_base(node.value)
            return
        self.generic_visit(node)

    def _visit_base(self, node):
        # below a flagged chain only what is not part of the chain itself (a call's arguments)
        while isinstance(node, ast.Attribute):
            node = node.value
        if not isinstance(node, ast.Name):
            self.visit(node)

    def visit_Name(self, node):
        if node.id == "__builtins__":
            self.hit("patching", node, "__builtins__")
        elif isinstance(node.ctx, ast.Load):
            full = self.aliases.get(node.id)
            if full and full != node.id:  # an alias: `from sys import _getframe as gf`, then gf()
                code = classify(full)
                if code:
                    self.hit(code, node, f"{node.id} (= {full})")

    def visit_Subscript(self, node):
        if not self._name_like(node):
            base = self.path(node.value)
            if base and base.split(".")[0] in _GUARDED and _folded(node.slice) is None:
                self.hit("dynamic_lookup", node, f"{base}[...]")
        self.generic_visit(node)

    def visit_Call(self, node):
        self._name_like(node)  # getattr(sys, "_getframe"), vars(torch)["_C"], __import__("ctypes")
        f = node.func
        fname = f.id if isinstance(f, ast.Name) and f.id not in self.own and f.id not in self.aliases else None
        fpath = self.path(f)
        if fname in ("exec", "eval", "compile"):
            self.hit("dynamic_code", node, f"{fname}(...)")
        elif (fname == "__import__" or fpath in ("importlib.import_module", "builtins.__import__")) and node.args:
            name = _folded(node.args[0])
            if name is None:
                self.hit("dynamic_import", node, f"{fname or fpath}(<computed name>)")
            elif classify(name):
                self.hit(classify(name), node, f"{fname or fpath}({name!r})")
        elif fname in ("getattr", "setattr", "delattr", "hasattr") and len(node.args) >= 2:
            base = self.path(node.args[0])
            key = _folded(node.args[1])
            if base and base.split(".")[0] in _GUARDED:
                if fname in ("setattr", "delattr") and not _under(base, ("torch.backends",)):
                    self.hit("patching", node, f"{fname}({base}, {key if key is not None else '...'})")
                elif key is None:
                    self.hit("dynamic_lookup", node, f"{fname}({base}, <computed name>)")
        self.generic_visit(node)

    def _store(self, target, node):
        if isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._store(t, node)
            return
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            base = self.path(target.value)
            if base and base.split(".")[0] in _GUARDED and not _under(base, ("torch.backends",)):
                self.hit("patching", node, f"{base}.{target.attr}" if isinstance(target, ast.Attribute)
                         else f"{base}[...]")

    def visit_Assign(self, node):
        for t in node.targets:
            self._store(t, node)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._store(node.target, node)
        self.generic_visit(node)

    def visit_Delete(self, node):
        for t in node.targets:
            self._store(t, node)
        self.generic_visit(node)

    def visit_FunctionDef(self, node):
        if node.name in _HOOK_METHODS:
            self.hit("mode_stack", node, f"def {node.name}")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        for b in node.bases:
            p = self.path(b)
            if p and classify(p) == "mode_stack":
                self.hit("mode_stack", node, f"class {node.name}({p})")
        self.generic_visit(node)


def _line_text(lines, n):
    text = lines[n - 1].strip() if 0 < n <= len(lines) else ""
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "…"


def _entry(code, file_name, evidence, **extra):
    severity, message = REVIEW[code]
    return {"code": code, "severity": severity, "file": file_name, "message": dict(message),
            "evidence": evidence[:MAX_EVIDENCE], **extra}


def _evasions(tree, lines, file_name):
    nodes = list(ast.walk(tree))  # once: a large file costs a walk per pass otherwise
    own = {n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    rv = _Review(own)
    rv.learn_aliases(nodes)
    rv.visit(tree)
    by_code = {}
    for code, line, what in rv.hits:
        ev = by_code.setdefault(code, {})
        if line not in ev:
            ev[line] = {"line": line, "text": _line_text(lines, line), "what": what}
    return [_entry(code, file_name, sorted(by_code[code].values(), key=lambda e: e["line"]))
            for code in REVIEW if code in by_code]


# ---------------------------------------------------------------------------- copies

_ROOT = Path(__file__).resolve().parents[2]
REFERENCE = _ROOT / "reference" / "batchnorm.py"
TEMPLATE = _ROOT / "student_template" / "batchnorm.py"  # only in a checkout; without it, compared whole
FINGERPRINT = Path(__file__).resolve().parent / "textbook_fingerprint.json"
# Dice score (grader/similarity.py) of the layer's code against the reference, template k-grams
# ignored. The corpus's layers, correct and mistaken, score below 0.25; the reference retyped
# with new names and without its unbiased option (tests/hostile/copy_of_reference.py) scores 0.8
REFERENCE_THRESHOLD = 0.6
_cache = {}


def _layer_source(source, tree):
    """The submission with only the BatchNorm2d class and the module-level code it uses left;
    every other line blank, so line numbers stay the file's."""
    spans = _reach(tree)
    return "\n".join(line if any(a <= n <= b for a, b in spans) else ""
                     for n, line in enumerate(source.splitlines(), 1)), spans


def _reference_copy(layer, lines, file_name):
    if not REFERENCE.exists():
        return []  # the student edition has no reference to compare with (grader/pack.py)
    if "reference" not in _cache:  # one assignment: batch grading scans from several threads
        _cache["reference"] = (REFERENCE.read_text(encoding="utf-8"),
                               TEMPLATE.read_text(encoding="utf-8") if TEMPLATE.exists() else None)
    reference, template = _cache["reference"]
    matches = similarity.similar_pairs({"a": layer, "b": reference}, template=template,
                                       threshold=REFERENCE_THRESHOLD)
    if not matches:
        return []
    m = matches[0]
    evidence = [{"line": sp.a_lines[0], "end_line": sp.a_lines[1], "text": _line_text(lines, sp.a_lines[0]),
                 "what": f"lines {sp.a_lines[0]}-{sp.a_lines[1]}"} for sp in sorted(m.spans, key=lambda s: s.a_lines)]
    return [_entry("copy_of_reference", file_name, evidence, similarity=round(m.score, 2))]


def _fingerprint():
    if "textbook" not in _cache:
        data = json.loads(FINGERPRINT.read_text(encoding="utf-8"))
        for f in data["features"]:
            f["patterns"] = []
            for shape in f.get("shapes") or [f["shape"]]:
                stmt = ast.parse(shape).body[0]
                f["patterns"].append(stmt.value if isinstance(stmt, ast.Expr) else stmt)
        _cache["textbook"] = data
    return _cache["textbook"]


def _is_ref(node):
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _fits(p, n):
    """Does node n have the shape of pattern p (see textbook_fingerprint.json)?"""
    if isinstance(p, ast.Name) and p.id == "_":
        return isinstance(n, ast.expr)
    if isinstance(p, ast.Name) and p.id == "ID":
        return _is_ref(n)
    if isinstance(p, ast.Constant):
        return isinstance(n, ast.Constant) and type(n.value) in (int, float, bool) and not isinstance(p.value, str) \
            and n.value == p.value
    if isinstance(p, (ast.Tuple, ast.List)):
        return isinstance(n, (ast.Tuple, ast.List)) and len(p.elts) == len(n.elts) and all(
            _fits(a, b) for a, b in zip(p.elts, n.elts))
    if type(p) is not type(n):
        return False
    if isinstance(p, ast.Call):
        kws = {k.arg: k.value for k in n.keywords}
        return _fits(p.func, n.func) and len(p.args) == len(n.args) and all(
            _fits(a, b) for a, b in zip(p.args, n.args)) and all(
            k.arg in kws and _fits(k.value, kws[k.arg]) for k in p.keywords)
    for name in p._fields:
        if name in ("ctx", "type_comment", "kind"):
            continue
        a, b = getattr(p, name, None), getattr(n, name, None)
        if isinstance(a, ast.AST):
            if not isinstance(b, ast.AST) or not _fits(a, b):
                return False
        elif isinstance(a, list):
            if not isinstance(b, list) or len(a) != len(b) or not all(
                    _fits(x, y) if isinstance(x, ast.AST) else x == y for x, y in zip(a, b)):
                return False
        elif a != b:
            return False
    return True


def _textbook_copy(tree, spans, lines, file_name):
    fp = _fingerprint()
    nodes = [n for top in tree.body if any(a <= top.lineno <= b for a, b in spans)
             for n in ast.walk(top) if isinstance(n, (ast.expr, ast.stmt))]
    total = sum(f["weight"] for f in fp["features"])
    got, evidence = 0, {}
    for f in fp["features"]:
        found = [n.lineno for n in nodes if any(_fits(p, n) for p in f["patterns"])]
        if len(found) >= f.get("count", 1):
            got += f["weight"]
            for line in found[:f.get("count", 1)]:
                evidence.setdefault(line, {"line": line, "text": _line_text(lines, line), "what": f["what"]})
    share = got / total if total else 0.0
    if share < fp["threshold"]:
        return []
    return [_entry("textbook_copy", file_name, sorted(evidence.values(), key=lambda e: e["line"]),
                   similarity=round(share, 2))]


def _copies(tree, source, lines, file_name):
    layer, spans = _layer_source(source, tree)
    if not spans:
        return []
    return _reference_copy(layer, lines, file_name) + _textbook_copy(tree, spans, lines, file_name)


def review_flags(entries: list[dict]) -> list[str]:
    """The result's flags for its review entries: needs_review once, informational codes by name."""
    out = ["needs_review"] if any(e.get("severity") == NEEDS_REVIEW for e in entries) else []
    return out + [e["code"] for e in entries if e.get("severity") == INFO and e["code"] not in out]


def review(source: str, file_name: str) -> list[dict]:
    """Integrity flags of one submission, in REVIEW's order: [{code, severity, file, message
    {en, zh}, evidence [{line, text, what}], ...}]. file_name is what the evidence names: the
    submission's own file name, never a path on this machine. [] for a file that does not
    parse (the sandbox reports the error)."""
    file_name = Path(file_name).name
    lines = source.splitlines()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    except RecursionError:
        tree = None
    try:
        out = _evasions(tree, lines, file_name) + _copies(tree, source, lines, file_name) if tree else None
    except RecursionError:
        out = None
    if out is None:
        # a deep enough expression (`1+1+...` a thousand times) would otherwise hide the whole
        # file from this scan, and end the grading with an internal error
        longest = max(range(len(lines)), key=lambda i: len(lines[i]), default=0) + 1
        return [_entry("unscannable", file_name, [{"line": longest, "text": _line_text(lines, longest),
                                                   "what": "nested too deeply"}])]
    order = list(REVIEW)
    return sorted(out, key=lambda e: order.index(e["code"]))
