"""Source scan for torch's built-in normalisation (parent process; parses, never executes).

The run-time recorder in the sandbox is the authority on what the code did; this scan
catches what a run may not reach and names the line. It resolves import aliases
(`from torch.nn import functional as G` -> G.batch_norm is torch.nn.functional.batch_norm),
string-built names in getattr/__import__, and follows the BatchNorm2d class into the
module-level functions and classes it uses. Uses outside that reach, say a comparison with
nn.BatchNorm2d under `if __name__ == "__main__":`, are notes, not violations.
"""
import ast
from dataclasses import dataclass

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
    """Findings, or [] when the source does not parse (the sandbox will report the error)."""
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
