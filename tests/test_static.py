import json

import pytest

from conftest import CORPUS, ROOT
from grader.checks.static import FINGERPRINT, REFERENCE_THRESHOLD, review, review_flags, scan

HEAD = "import torch\nfrom torch import nn\n"


def _violations(src):
    return [f for f in scan(src) if f.in_class]


def _class(body):
    return (f"class BatchNorm2d(nn.Module):\n    def forward(self, X):\n        {body}\n")


def test_direct_uses_in_the_class_are_violations():
    for body in ["return nn.functional.batch_norm(X, None, None, training=True)",
                 "return torch.batch_norm(X, None, None, None, None, True, 0.1, 1e-5, False)",
                 "return nn.BatchNorm2d(3)(X)",
                 "return torch.nn.functional.layer_norm(X, X.shape[1:])",
                 "return torch.ops.aten.native_batch_norm(X, None, None, None, None, True, 0.1, 1e-5)[0]",
                 "return torch.group_norm(X, 1)",
                 "return nn.InstanceNorm2d(3)(X)"]:
        assert _violations(HEAD + _class(body)), body


def test_aliases_and_strings_are_resolved():
    src = "from torch.nn import functional as G\nfrom torch.nn import BatchNorm2d as BN\n" + HEAD + _class(
        "a = G.batch_norm; b = BN(3); c = getattr(G, 'instance_norm'); return X")
    texts = " ".join(f.text for f in _violations(src))
    assert "torch.nn.functional.batch_norm" in texts and "BN (= torch.nn.BatchNorm2d)" in texts
    assert "'instance_norm'" in texts


def test_helpers_reached_from_the_class_count():
    src = HEAD + "def helper(x):\n    return torch.nn.functional.batch_norm(x, None, None, training=True)\n" + _class(
        "return helper(X)")
    assert [f.line for f in _violations(src)] == [4]


def test_own_names_tests_and_messages_are_not_violations():
    src = HEAD + (
        "def batch_norm(X, gamma, beta):\n    return X\n"
        "class BatchNorm2d(nn.Module):\n"
        "    '''My batch_norm, unlike nn.BatchNorm2d.'''\n"
        "    def forward(self, X):\n"
        "        if X.dim() not in (2, 4): raise ValueError('BatchNorm2d needs 2-D or 4-D input')\n"
        "        return self.batch_norm(batch_norm(X, 1, 0))\n"
        "    def batch_norm(self, X):\n        return X\n"
        "if __name__ == '__main__':\n"
        "    ref = nn.BatchNorm2d(3)\n")
    findings = scan(src)
    assert not [f for f in findings if f.in_class]
    assert [f.line for f in findings if not f.in_class] == [13]


def test_syntax_error_is_left_to_the_sandbox():
    assert scan("def broken(:\n") == []


def test_strings_count_only_where_they_name_a_lookup():
    src = HEAD + _class("self.kind = 'batch_norm'; label = 'BatchNorm'; return X")
    assert _violations(src) == []
    src = HEAD + _class("return getattr(torch.nn.functional, 'batch_norm')(X, None, None, training=True)")
    assert [f.text for f in _violations(src)] == ["getattr(..., 'batch_norm')"]


def test_switching_off_torch_function_hooks_is_a_violation():
    src = HEAD + _class("with torch._C.DisableTorchFunction():\n            return X")
    assert _violations(src)


# ---------------------------------------------------------------------------- integrity review

CLEAN = (CORPUS / "correct_var_mean.py").read_text()


def _codes_at(src):
    """{code: [lines]} of the needs-review flags of CLEAN with src appended."""
    base = len(CLEAN.splitlines())
    return {e["code"]: [ev["line"] - base for ev in e["evidence"]]
            for e in review(CLEAN + src, "sub.py") if e["severity"] == "needs_review"}


# (code appended to a correct submission, the flag it must raise, the lines of the snippet)
EVASIONS = [
    ("import sys\nf = sys._getframe(1)\n", "introspection", [2]),
    ("import sys as s\nf = s._getframe(1)\n", "introspection", [2]),
    ("from sys import _getframe as gf\nx = 1\nf = gf()\n", "introspection", [1, 3]),
    ("import sys\nf = getattr(sys, '_getframe')(0)\n", "introspection", [2]),
    ("import sys\nf = getattr(sys, '_get' + 'frame')(0)\n", "introspection", [2]),
    ("import inspect\nx = 1\ng = inspect.currentframe().f_back.f_globals\n", "introspection", [3]),
    ("import gc\nobjs = gc.get_objects()\n", "introspection", [2]),
    ("import torch\nmodes = object.__subclasses__()\n", "introspection", [2]),
    ("import torch._refs as R\nx = 1\ny = R._normalize\n", "torch_internals", [1, 3]),
    ("from torch import _C\nx = 1\nn = _C._get_tracing_state\n", "torch_internals", [1, 3]),
    ("import torch\nx = 1\nd = torch._decomp.decomposition_table\n", "torch_internals", [3]),
    ("import torch\nx = 1\nd = getattr(torch, '_' + 'refs')\n", "torch_internals", [3]),
    ("import torch\nx = 1\nop = torch.ops.aten.var_mean\n", "torch_internals", [3]),
    ("import torch\nT = torch\nx = 1\nd = T._prims\n", "torch_internals", [4]),
    ("import torch.overrides\nx = 1\nm = torch.overrides._pop_mode()\n", "mode_stack", [3]),
    ("from torch.overrides import _get_current_function_mode_stack as st\nx = 1\ns = st()\n", "mode_stack", [1, 3]),
    ("import torch\nx = 1\nm = torch._C._pop_torch_function_stack()\n", "mode_stack", [3]),
    ("from torch.overrides import TorchFunctionMode\nx = 1\nclass Quiet(TorchFunctionMode):\n    pass\n",
     "mode_stack", [1, 3]),
    ("from torch.utils._python_dispatch import TorchDispatchMode\n", "mode_stack", [1]),
    ("import torch\nclass T(torch.Tensor):\n    @classmethod\n    def __torch_function__(cls, f, t, a=(), k=None):\n"
     "        return f(*a)\n", "mode_stack", [4]),
    ("import ctypes\n", "native_code", [1]),
    ("from ctypes import *\n", "native_code", [1]),
    ("m = __import__('ctypes')\n", "native_code", [1]),
    ("import torch\nx = 1\nf = torch.jit.script(lambda t: t)\n", "compiled", [3]),
    ("import torch\nx = 1\nf = torch.compile(lambda t: t)\n", "compiled", [3]),
    ("from torch import jit\nx = 1\ncu = jit.CompilationUnit('')\n", "compiled", [1, 3]),
    ("name = 'tor' + chr(99) + 'h'\nm = __import__(name)\n", "dynamic_import", [2]),
    ("import importlib\nn = 'x'\nm = importlib.import_module(n)\n", "dynamic_import", [3]),
    ("import importlib.util\nx = 1\ns = importlib.util.spec_from_file_location('r', 'reference/batchnorm.py')\n",
     "dynamic_import", [1, 3]),
    ("exec('print(1)')\n", "dynamic_code", [1]),
    ("import torch\nname = input()\nf = getattr(torch, name)\n", "dynamic_lookup", [3]),
    ("import sys\nx = 1\nsys.modules['grader'] = None\n", "sys_modules", [3]),
    ("import sys\nx = 1\nm = sys.modules.get('torch')\n", "sys_modules", [3]),
    ("import builtins\nx = 1\nbuiltins.print = lambda *a: None\n", "patching", [3]),
    ("import builtins\nx = 1\nsetattr(builtins, 'len', lambda a: 0)\n", "patching", [3]),
    ("__builtins__['print'] = None\n", "patching", [1]),
    ("import torch\nx = 1\ntorch.Tensor.__eq__ = lambda a, b: True\n", "patching", [3]),
]


@pytest.mark.parametrize("src,code,lines", EVASIONS, ids=[f"{c}-{i}" for i, (_, c, _) in enumerate(EVASIONS)])
def test_evasions_need_review_with_their_lines(src, code, lines):
    found = _codes_at("\n" + src)
    assert code in found, found
    assert [n - 1 for n in found[code]] == lines  # -1: the leading newline


def test_evidence_names_the_file_and_the_line_text():
    src = CLEAN + "\nimport sys\nframe = sys._getframe(1)   \n"
    [entry] = review(src, "hw9.py")
    n = len(src.splitlines())
    assert entry["file"] == "hw9.py" and entry["code"] == "introspection"
    assert entry["evidence"] == [{"line": n, "text": "frame = sys._getframe(1)", "what": "sys._getframe"}]
    assert set(entry["message"]) == {"en", "zh"} and all(entry["message"].values())
    assert review_flags([entry]) == ["needs_review"]


def test_ordinary_code_needs_no_review():
    src = CLEAN + (
        "\nimport sys\nimport gc\nimport importlib\nimport builtins\nimport inspect\n"
        "def compile(x):\n    return x\n"
        "def helper(model, name):\n"
        "    torch.backends.cudnn.deterministic = True\n"
        "    torch.manual_seed(0)\n"
        "    model.eval()\n"
        "    w = getattr(model, name)\n"
        "    f = torch.nn.functional.relu(w)\n"
        "    g = torch.autograd.grad\n"
        "    print(sys.version, inspect.isclass(model), builtins.len([1]))\n"
        "    gc.collect()\n"
        "    np = importlib.import_module('numpy')\n"
        "    return compile(f), torch.__version__, getattr(torch, 'float64')\n"
        "if __name__ == '__main__':\n"
        "    sys.exit(0)\n")
    assert review(src, "sub.py") == []


def test_existing_builtin_findings_are_unchanged_by_the_review():
    # a caught cheat stays a scan() violation; the review adds only what the scan does not score
    src = HEAD + _class("return torch.nn.functional.batch_norm(X, None, None, training=True)")
    assert _violations(src) and review(src, "sub.py") == []


def test_a_syntax_error_gives_no_review():
    assert review("import sys\nsys._getframe(\n", "sub.py") == []


# ---------------------------------------------------------------------------- copies

def test_a_retyped_reference_is_a_copy_with_its_lines():
    src = (ROOT / "tests" / "hostile" / "copy_of_reference.py").read_text()
    [entry] = review(src, "copy.py")
    assert entry["code"] == "copy_of_reference" and entry["severity"] == "needs_review"
    assert entry["similarity"] >= REFERENCE_THRESHOLD
    lines = src.splitlines()
    forward = next(n for n, line in enumerate(lines, 1) if "def forward" in line)
    main = next(n for n, line in enumerate(lines, 1) if "__main__" in line)
    covered = {n for ev in entry["evidence"] for n in range(ev["line"], ev["end_line"] + 1)}
    # the forward pass is matched; the student's own test block is not part of the layer
    assert len(covered & set(range(forward, forward + 10))) >= 5
    assert not covered & set(range(main, len(lines) + 1))


def test_the_reference_itself_is_a_copy_and_the_template_is_not():
    assert [e["code"] for e in review((ROOT / "reference" / "batchnorm.py").read_text(), "bn.py")] == \
        ["copy_of_reference"]
    assert review((ROOT / "student_template" / "batchnorm.py").read_text(), "bn.py") == []


def test_a_textbook_layer_is_information_not_review():
    entries = review((CORPUS / "correct_textbook.py").read_text(), "bn.py")
    assert [(e["code"], e["severity"]) for e in entries] == [("textbook_copy", "info")]
    assert review_flags(entries) == ["textbook_copy"]
    # the evidence is the textbook's shapes, in the layer's function and class
    fingerprint = json.loads(FINGERPRINT.read_text())
    lines = (CORPUS / "correct_textbook.py").read_text().splitlines()
    start = next(n for n, line in enumerate(lines, 1) if line.startswith("def batch_norm"))
    assert {ev["what"] for ev in entries[0]["evidence"]} <= {f["what"] for f in fingerprint["features"]}
    assert len(entries[0]["evidence"]) >= 8 and all(ev["line"] > start for ev in entries[0]["evidence"])


def test_a_textbook_function_used_only_by_a_test_block_is_not_the_layer():
    # the fingerprint is looked for in BatchNorm2d and what it uses, not anywhere in the file
    src = (CORPUS / "correct_textbook.py").read_text().replace("def batch_norm(", "def book_batch_norm(")
    src = src.replace("Y, self.moving_mean, self.moving_var = batch_norm(",
                      "Y, self.moving_mean, self.moving_var = (lambda *a, **k: (a[0], a[3], a[4]))(")
    assert [e["code"] for e in review(src, "bn.py")] == []


def test_a_file_too_deep_to_walk_needs_review_instead_of_crashing_the_grader():
    deep = "y = " + " + ".join(["x"] * 3000)
    src = CLEAN + "\nx = 1\n" + deep + "\n"
    assert scan(src) == []  # the run-time recorder is then the only line: hence the flag
    [entry] = review(src, "deep.py")
    assert entry["code"] == "unscannable" and entry["severity"] == "needs_review"
    assert [ev["line"] for ev in entry["evidence"]] == [len(src.splitlines())]
