import random
import re
import time

from conftest import ROOT
from grader.similarity import Match, Span, explain, normalise, similar_pairs

TEMPLATE = (ROOT / "student_template" / "batchnorm.py").read_text(encoding="utf-8")
TODO = "        # TODO 实现BN\n        return Y\n"

ALICE = '''\
# Alice: BatchNorm for ch. 9
import torch
from torch import nn


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        if num_dims == 2:
            shape = (1, num_features)
        else:
            shape = (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        # keep the running statistics on the input's device
        if self.moving_mean.device != X.device:
            self.moving_mean = self.moving_mean.to(X.device)
            self.moving_var = self.moving_var.to(X.device)
        if not torch.is_grad_enabled() or not self.training:
            # eval: normalise with the running statistics
            X_hat = (X - self.moving_mean) / torch.sqrt(self.moving_var + self.eps)
        else:
            assert len(X.shape) in (2, 4)
            if len(X.shape) == 2:
                mean = X.mean(dim=0, keepdim=True)
                var = ((X - mean) ** 2).mean(dim=0, keepdim=True)
            else:
                mean = X.mean(dim=(0, 2, 3), keepdim=True)
                var = ((X - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
            X_hat = (X - mean) / torch.sqrt(var + self.eps)
            # momentum is a decay (the slides' convention)
            self.moving_mean = self.momentum * self.moving_mean + (1.0 - self.momentum) * mean.detach()
            self.moving_var = self.momentum * self.moving_var + (1.0 - self.momentum) * var.detach()
        Y = self.gamma * X_hat + self.beta
        return Y
'''

# Alice's code with every name changed, black-style formatting, other comments, docstrings
BOB = '''\
"""Homework 9 -- Bob's batch normalisation."""
import torch
from torch import nn


class BatchNorm2d(nn.Module):
    """Per-channel batch normalisation."""

    def __init__(self, n_ch, n_dims, decay=0.9, epsilon=1e-5):
        super().__init__()
        if n_dims == 2:
            sz = (1, n_ch)
        else:
            sz = (1, n_ch, 1, 1)
        self.scale = nn.Parameter(torch.ones(sz))
        self.shift = nn.Parameter(torch.zeros(sz))
        self.run_mu = torch.zeros(sz)
        self.run_sq = torch.ones(sz)
        self.decay = decay
        self.epsilon = epsilon

    def forward(self, inp):
        """Normalise `inp` with batch statistics (training) or the running ones."""
        if self.run_mu.device != inp.device:
            self.run_mu = self.run_mu.to(inp.device)
            self.run_sq = self.run_sq.to(inp.device)

        if not torch.is_grad_enabled() or not self.training:
            normed = (inp - self.run_mu) / torch.sqrt(
                self.run_sq + self.epsilon
            )
        else:
            assert len(inp.shape) in (2, 4)
            if len(inp.shape) == 2:
                mu = inp.mean(dim=0, keepdim=True)
                sq = ((inp - mu) ** 2).mean(dim=0, keepdim=True)
            else:
                mu = inp.mean(dim=(0, 2, 3), keepdim=True)
                sq = ((inp - mu) ** 2).mean(
                    dim=(0, 2, 3),
                    keepdim=True,
                )
            normed = (inp - mu) / torch.sqrt(sq + self.epsilon)
            self.run_mu = (
                self.decay * self.run_mu + (1.0 - self.decay) * mu.detach()
            )
            self.run_sq = (
                self.decay * self.run_sq + (1.0 - self.decay) * sq.detach()
            )
        out = self.scale * normed + self.shift
        return out
'''

# an independent solution: a module-level function with torch.var_mean and in-place updates
DAVE = '''\
import torch
from torch import nn


def _normalise(x, weight, bias, run_mean, run_var, momentum, eps, training):
    """The slide's formula; the running statistics are updated in place."""
    dims = 0 if x.dim() == 2 else (0, 2, 3)
    if training:
        var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
        with torch.no_grad():
            run_mean.mul_(momentum).add_((1 - momentum) * mean)
            run_var.mul_(momentum).add_((1 - momentum) * var)
    else:
        mean, var = run_mean, run_var
    return weight * (x - mean) * torch.rsqrt(var + eps) + bias


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        if num_dims == 2:
            shape = (1, num_features)
        else:
            shape = (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        training = self.training and torch.is_grad_enabled()
        return _normalise(X, self.gamma, self.beta, self.moving_mean, self.moving_var,
                          self.momentum, self.eps, training)
'''

# two students who only replaced the template's TODO, each in their own way
EVE = TEMPLATE.replace(TODO, '''\
        dims = (0, 2, 3) if X.dim() == 4 else (0,)
        if self.training:
            mean = X.mean(dim=dims, keepdim=True)
            var = X.var(dim=dims, unbiased=False, keepdim=True)
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        else:
            mean, var = self.moving_mean, self.moving_var
        return self.gamma * (X - mean) / torch.sqrt(var + self.eps) + self.beta
''')
FRANK = TEMPLATE.replace(TODO, '''\
        if not self.training:
            return self.gamma * (X - self.moving_mean) / (self.moving_var + self.eps).sqrt() + self.beta
        axes = [0] + list(range(2, X.dim()))
        var, mean = torch.var_mean(X, dim=axes, unbiased=False, keepdim=True)
        with torch.no_grad():
            self.moving_mean.mul_(self.momentum).add_(mean, alpha=1 - self.momentum)
            self.moving_var.mul_(self.momentum).add_(var, alpha=1 - self.momentum)
        return self.gamma * (X - mean) / (var + self.eps).sqrt() + self.beta
''')
GRACE = TEMPLATE.replace(TODO, '''\
        if self.training and torch.is_grad_enabled():
            if len(X.shape) == 2:
                n = X.shape[0]
                mean = X.sum(dim=0, keepdim=True) / n
                var = ((X - mean) ** 2).sum(dim=0, keepdim=True) / n
            else:
                n = X.shape[0] * X.shape[2] * X.shape[3]
                mean = X.sum(dim=(0, 2, 3), keepdim=True) / n
                var = ((X - mean) ** 2).sum(dim=(0, 2, 3), keepdim=True) / n
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        else:
            mean = self.moving_mean
            var = self.moving_var
        X_hat = (X - mean) / (var + self.eps) ** 0.5
        return self.gamma * X_hat + self.beta
''')
HEIDI = TEMPLATE.replace(TODO, '''\
        C = X.shape[1]
        bshape = [1, C] + [1] * (X.dim() - 2)
        if not torch.is_grad_enabled() or not self.training:
            mean, var = self.moving_mean, self.moving_var
        else:
            flat = X.transpose(0, 1).reshape(C, -1)
            mu = flat.mean(1)
            sigma2 = ((flat - mu[:, None]) ** 2).mean(1)
            mean = mu.view(bshape)
            var = sigma2.view(bshape)
            self.moving_mean = (self.momentum * self.moving_mean + (1 - self.momentum) * mean).detach()
            self.moving_var = (self.momentum * self.moving_var + (1 - self.momentum) * var).detach()
        return self.gamma * (X - mean) * torch.rsqrt(var + self.eps) + self.beta
''')

# the self-check snippet the course handed out, pasted at the end by every student
SELF_CHECK = '''

if __name__ == "__main__":
    # self-check against torch (momentum is the other way round there)
    torch.manual_seed(0)
    for shape, dims in (((8, 3, 5, 5), 4), ((8, 3), 2)):
        X = torch.randn(*shape) * 3 + 1
        mine = BatchNorm2d(3, dims)
        ref = nn.BatchNorm2d(3) if dims == 4 else nn.BatchNorm1d(3)
        ref.momentum = 0.1
        mine.train()
        ref.train()
        for _ in range(3):
            y1, y2 = mine(X), ref(X)
            assert torch.allclose(y1, y2, atol=1e-5), (y1 - y2).abs().max()
        mine.eval()
        ref.eval()
        with torch.no_grad():
            y1, y2 = mine(X), ref(X)
        print(shape, "eval max diff", (y1 - y2).abs().max().item())
        print(shape, "running mean diff", (mine.moving_mean.flatten() - ref.running_mean).abs().max().item())
        print(shape, "running var diff", (mine.moving_var.flatten() - ref.running_var).abs().max().item())
    print("all good")
'''


def _lines(src, first, last=None):
    """1-based numbers of the first line containing `first` and the first after it containing `last`."""
    rows = src.splitlines()
    a = next(i for i, r in enumerate(rows, 1) if first in r)
    if last is None:
        return a
    return a, next(i for i, r in enumerate(rows, 1) if i > a and last in r)


def _pair(matches, a, b):
    found = [m for m in matches if (m.a, m.b) == (a, b)]
    return found[0] if found else None


def _covers(span_range, lines):
    return span_range[0] <= lines[0] and lines[1] <= span_range[1]


def _overlap(spans, lines):
    """How many of `lines` (a range in submission a) the spans cover at most."""
    return max([min(s.a_lines[1], lines[1]) - max(s.a_lines[0], lines[0]) + 1 for s in spans] + [0])


def test_normalise_drops_names_layout_comments_and_docstrings():
    plain = "def f(x, n):\n    y = x.mean(dim=(0, 2), keepdim=True) * 2\n    return len(y), 'a'\n"
    dressed = ('def g(inp, count):\n    """Doc."""\n    # a comment\n    out = (\n        inp.mean(\n'
               '            dim=(0, 2),\n            keepdim=True,\n        )\n        * 2  # why\n    )\n\n'
               '    return len(out), "b" "c"\n')
    assert [t for t, _ in normalise(plain)] == [t for t, _ in normalise(dressed)]
    toks = [t for t, _ in normalise(plain)]
    # the torch API and builtins stay, so a different formula is a different token stream
    assert "mean" in toks and "len" in toks and "STR" in toks and "NUM" in toks and "f" not in toks
    assert [line for t, line in normalise(dressed) if t == "return"] == [12]
    # an attribute the file assigns is the student's name, not an API
    assert "run_mu" not in [t for t, _ in normalise(BOB)] and "detach" in [t for t, _ in normalise(BOB)]


def test_renamed_reformatted_copy_is_flagged_with_forward_spans():
    matches = similar_pairs({"alice": ALICE, "bob": BOB, "dave": DAVE}, template=TEMPLATE)
    m = _pair(matches, "alice", "bob")
    assert m is not None and m.score >= 0.8, matches
    # forward's body on both sides, from its first statement; `def forward` is the template's
    fa = _lines(ALICE, "if self.moving_mean.device", "return Y")
    fb = _lines(BOB, "if self.run_mu.device", "return out")
    assert any(_covers(s.a_lines, fa) and _covers(s.b_lines, fb) for s in m.spans), m.spans
    assert all(s.a_lines[0] >= fa[0] and s.b_lines[0] >= fb[0] for s in m.spans), m.spans


def test_reordered_methods_still_flagged():
    head, rest = BOB.split("    def __init__", 1)
    init, forward = rest.split("    def forward", 1)
    moved = head + "    def forward" + forward.rstrip("\n") + "\n\n    def __init__" + init.rstrip("\n") + "\n"
    assert moved.index("def forward") < moved.index("def __init__")
    m = _pair(similar_pairs({"alice": ALICE, "carol": moved}, template=TEMPLATE), "alice", "carol")
    assert m is not None and m.score >= 0.8
    # without the template both methods match, in opposite order: two regions, not merged
    m = _pair(similar_pairs({"alice": ALICE, "carol": moved}), "alice", "carol")
    assert m is not None and m.score >= 0.9
    fa, fc = _lines(ALICE, "def forward", "return Y"), _lines(moved, "def forward", "return out")
    ia, ic = _lines(ALICE, "def __init__", "self.eps"), _lines(moved, "def __init__", "self.epsilon")
    assert any(_covers(s.a_lines, fa) and _covers(s.b_lines, fc) for s in m.spans), m.spans
    assert any(s.a_lines[0] <= ia[0] + 1 and s.b_lines[0] <= ic[0] + 1 and s.a_lines[1] >= ia[1]
               and s.b_lines[1] >= ic[1] for s in m.spans), m.spans


def test_independent_styles_are_not_flagged():
    sources = {"alice": ALICE, "dave": DAVE, "eve": EVE, "frank": FRANK, "grace": GRACE, "heidi": HEIDI}
    assert similar_pairs(sources, template=TEMPLATE) == []
    # and not by a narrow margin
    scores = {(m.a, m.b): m.score for m in similar_pairs(sources, template=TEMPLATE, threshold=0.0)}
    assert max(scores.values()) < 0.5, scores
    assert scores.get(("alice", "dave"), 0.0) < 0.2, scores


def test_template_only_overlap_is_not_flagged():
    pair = {"eve": EVE, "frank": FRANK}
    alone = _pair(similar_pairs(pair, threshold=0.0), "eve", "frank")
    assert alone is not None and alone.score > 0.4  # the template's __init__ alone looks alike
    assert similar_pairs(pair, template=TEMPLATE) == []
    with_template = _pair(similar_pairs(pair, template=TEMPLATE, threshold=0.0), "eve", "frank")
    assert with_template is None or with_template.score < 0.15
    # two untouched templates share nothing of their own
    assert similar_pairs({"x": TEMPLATE, "y": TEMPLATE}, template=TEMPLATE, threshold=0.0) == []


def test_idiom_shared_by_most_of_the_class_is_ignored():
    cls = {name: src + SELF_CHECK for name, src in
           {"alice": ALICE, "dave": DAVE, "eve": EVE, "frank": FRANK, "grace": GRACE, "heidi": HEIDI}.items()}
    snippet = _lines(cls["eve"], '__name__ == "__main__"', "all good")
    # in a class of two the rule does not apply, and the pasted snippet is most of what they share
    two = _pair(similar_pairs({"eve": cls["eve"], "frank": cls["frank"]}, template=TEMPLATE, threshold=0.0),
                "eve", "frank")
    assert two.score >= 0.5 and any(_covers(s.a_lines, snippet) for s in two.spans), two
    assert similar_pairs(cls, template=TEMPLATE) == []
    six = _pair(similar_pairs(cls, template=TEMPLATE, threshold=0.0), "eve", "frank")
    # what is left is a k-gram or two across the end of forward and the snippet's first lines
    assert six is None or (six.score < 0.1 and _overlap(six.spans, snippet) <= 3), six
    # a copy in that class is still found, and by its own code
    cls["bob"] = BOB + SELF_CHECK
    m = _pair(similar_pairs(cls, template=TEMPLATE), "alice", "bob")
    assert m is not None and m.score >= 0.8
    assert _overlap(m.spans, _lines(cls["alice"], '__name__ == "__main__"', "all good")) <= 3, m.spans


def test_broken_sources_do_not_crash():
    missing_colon = ALICE.replace("def forward(self, X):", "def forward(self, X)")
    broken = {
        "missing_colon": missing_colon,
        "open_paren": ALICE.replace("torch.sqrt(var + self.eps)", "torch.sqrt(var + self.eps"),
        "open_string": ALICE.replace("        Y = self.gamma", '        """never closed\n        Y = self.gamma'),
        "bad_dedent": ALICE.replace("        Y = self.gamma", "      Y = self.gamma"),
        "null_byte": ALICE.replace("# Alice", "# \x00Alice"),
        "tabs": "if x:\n\tpass\n        pass\n",
        "empty": "",
        "garbage": "$$$ ``` \\",
    }
    for name, src in broken.items():
        toks = normalise(src)
        assert isinstance(toks, list), name
        if name not in ("empty", "garbage", "tabs"):
            assert len(toks) > 100, (name, len(toks))  # the part before the error still counts
    everyone = {"alice": ALICE, **broken}
    for m in similar_pairs(everyone, template=TEMPLATE, threshold=0.0):
        explain(m, everyone, context=2)
    # one at a time (together they are most of the class, so Alice's code would be an idiom)
    for name in ("missing_colon", "open_paren", "bad_dedent", "null_byte"):
        m = _pair(similar_pairs({"alice": ALICE, name: broken[name]}, template=TEMPLATE), "alice", name)
        assert m is not None and m.spans, name
    assert _pair(similar_pairs({"alice": ALICE, "x": broken["missing_colon"]}), "alice", "x").score > 0.95


def test_deterministic_and_symmetric():
    sources = {"alice": ALICE, "bob": BOB, "dave": DAVE, "eve": EVE, "frank": FRANK, "grace": GRACE}
    first = similar_pairs(sources, template=TEMPLATE, threshold=0.0)
    assert first and similar_pairs(sources, template=TEMPLATE, threshold=0.0) == first
    backwards = dict(reversed(list(sources.items())))
    assert similar_pairs(backwards, template=TEMPLATE, threshold=0.0) == first
    assert all(m.a < m.b for m in first)
    assert [m.score for m in first] == sorted((m.score for m in first), reverse=True)
    # swap who is who: the same score, the spans mirrored
    m = _pair(first, "alice", "bob")
    sources["zed"] = sources.pop("alice")
    swapped = _pair(similar_pairs(sources, template=TEMPLATE), "bob", "zed")
    assert m.spans and swapped.score == m.score
    assert sorted((s.b_lines, s.a_lines) for s in swapped.spans) == sorted((s.a_lines, s.b_lines) for s in m.spans)


def test_explain_names_the_ranges_and_shows_the_lines():
    m = Match("alice", "bob", 0.93, [Span((20, 40), (26, 50))])
    text = explain(m, {"alice": ALICE, "bob": BOB}, context=1)
    assert "alice 20-40 ~ bob 26-50" in text and "0.93" in text
    # the first two non-blank lines of each side (Bob's line 27 is blank)
    assert "alice   20 |     def forward(self, X):" in text and "alice   21 |" in text and "alice   22" not in text
    assert "bob     26 |             self.run_sq" in text and "bob     28 |" in text and "bob     27" not in text
    real = similar_pairs({"alice": ALICE, "bob": BOB}, template=TEMPLATE)[0]
    lines = explain(real, {"alice": ALICE, "bob": BOB}).splitlines()
    assert re.fullmatch(r"  alice \d+-\d+ ~ bob \d+-\d+", lines[1]) and len(lines) == 1 + 3 * len(real.spans)
    assert lines[2].endswith("if self.moving_mean.device != X.device:")


_WORDS = ["mu", "var", "tmp", "acc", "h", "z", "out", "stat", "norm", "buf", "s", "q", "w", "m", "d"]
_CALLS = ["torch.sqrt", "torch.exp", "torch.abs", "torch.rsqrt", "torch.tanh", "torch.sigmoid", "torch.log1p"]
_METHODS = ["mean", "sum", "amax", "amin", "std", "var", "square", "clamp_min"]
_DIMS = ["0", "(0, 2, 3)", "1", "-1", "(2, 3)"]


def _expr(rng, names, depth):
    r = rng.random()
    if depth == 0 or r < 0.25:
        return rng.choice(names + ["X", "self.gamma", "self.beta", str(rng.randint(1, 9))])
    if r < 0.5:
        return f"{rng.choice(_CALLS)}({_expr(rng, names, depth - 1)})"
    if r < 0.7:
        return f"({_expr(rng, names, depth - 1)}).{rng.choice(_METHODS)}(dim={rng.choice(_DIMS)}, keepdim=True)"
    op = rng.choice(["+", "-", "*", "/", "**"])
    return f"({_expr(rng, names, depth - 1)} {op} {_expr(rng, names, depth - 1)})"


def _synthetic(rng, n_statements=55):
    names = [f"{w}{rng.randint(0, 99)}" for w in rng.sample(_WORDS, 6)]
    body = []
    for i in range(n_statements):
        r = rng.random()
        if r < 0.1:
            body.append(f"        # step {i}: {rng.choice(_WORDS)} {rng.choice(_METHODS)}")
        elif r < 0.2:
            body.append("")
        if r < 0.15:
            body.append(f"        if {rng.choice(names)}.dim() == {rng.randint(2, 4)}:")
            body.append(f"            {rng.choice(names)} = {_expr(rng, names, 2)}")
        else:
            body.append(f"        {rng.choice(names)} = {_expr(rng, names, rng.choice((1, 2, 2, 3)))}")
    # the lines every correct solution has: in more than half the class, so ignored
    body.append("        self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean")
    body.append(f"        return self.gamma * {names[0]} + self.beta")
    return TEMPLATE.replace(TODO, "\n".join(body) + "\n"), names


def _plagiarise(rng, src, names):
    for old in names:
        src = re.sub(rf"\b{old}\b", f"my_{old}_{rng.randint(0, 9)}", src)
    rows = src.splitlines()
    for _ in range(5):
        at = rng.randrange(20, len(rows))
        rows.insert(at, " " * (len(rows[at]) - len(rows[at].lstrip())) + "# " + rng.choice(_WORDS))
    return "\n".join(rows) + "\n"


def _partly_copied(rng, src, names, share):
    """src with a share of its statements kept and the rest written anew."""
    rows = src.splitlines()
    for n, row in enumerate(rows):
        if row.startswith("        ") and " = " in row and not row.lstrip().startswith("self.") and \
                rng.random() > share:
            rows[n] = f"        {rng.choice(names)} = {_expr(rng, names, 3)}"
    return "\n".join(rows) + "\n"


def test_the_threshold_loses_no_pair_that_scores_above_it():
    # the threshold prunes candidate pairs before scoring: it must give exactly the pairs that
    # scoring every pair would
    rng = random.Random(5)
    sources = {}
    for i in range(4):
        src, names = _synthetic(rng)
        sources[f"base{i}"] = src
        for j, share in enumerate((0.2, 0.4, 0.6, 0.75, 0.85, 0.95)):
            sources[f"copy{i}_{j}"] = _partly_copied(rng, src, names, share)
    everything = similar_pairs(sources, template=TEMPLATE, threshold=0.0)
    bands = {int(m.score * 10) for m in everything}
    assert bands >= set(range(10)), bands  # scores spread over the whole range
    for threshold in (0.3, 0.6, 0.8, 0.95):
        assert similar_pairs(sources, template=TEMPLATE, threshold=threshold) == \
            [m for m in everything if m.score >= threshold], threshold


def test_a_class_of_300_is_fast_and_finds_exactly_the_copies():
    rng = random.Random(9)
    sources, planted = {}, set()
    for i in range(290):
        sources[f"s{i:03d}"], names = _synthetic(rng)
        if i < 10:
            sources[f"t{i:03d}"] = _plagiarise(rng, sources[f"s{i:03d}"], names)
            planted.add((f"s{i:03d}", f"t{i:03d}"))
    assert len(sources) == 300 and 90 < sum(len(s.splitlines()) for s in sources.values()) / 300 < 130
    t0 = time.perf_counter()
    matches = similar_pairs(sources, template=TEMPLATE)
    elapsed = time.perf_counter() - t0
    assert {(m.a, m.b) for m in matches} == planted
    assert all(m.score > 0.9 and m.spans for m in matches)
    assert elapsed < 30, elapsed  # a generous bound: well under 10 s is the goal (about 1 s here)
