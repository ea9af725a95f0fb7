from grader.checks.static import scan

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
