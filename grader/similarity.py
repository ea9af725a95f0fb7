"""Near-identical submissions across a class (parent process; tokenizes student code, never
executes it).

Owns the normalised token stream of a submission, the k-gram fingerprints, the pair score and
the matching line spans that explain a flag. A flag is for an instructor to look at: it never
changes a score (the gradebook lists it beside the student's flags and on the summary page).

The score of a pair is the Dice overlap of their multisets of *counted* k-grams: those that are
neither in the template nor, in a class of at least 4, in more than half of the submissions.
    score(a, b) = 2 * sum_g min(count_a(g), count_b(g)) / (|a| + |b|)
where |s| is the number of counted k-grams of s (with repeats). It is symmetric, 1.0 for two
submissions whose own code is the same after normalisation, and it ignores the order of the
k-grams, so moving a method only costs the few k-grams that straddle its edges.

Cost: tokenize dominates (a few ms a submission); pairs are found through an index of k-grams,
with a prefix filter, so the work grows with the pairs that share rare code, not with n^2.
"""
import builtins
import io
import keyword
import math
import tokenize
from collections import Counter, defaultdict
from dataclasses import dataclass

MAX_SPANS = 10
# two regions this close (lines between them, on both sides, in the same order) are shown as
# one: a statement changed in the copy, or left out as a common idiom, splits a region in two
LINE_GAP = 2
_BUILTINS = frozenset(dir(builtins))
_ASSIGN_OPS = frozenset({"=", "+=", "-=", "*=", "/=", "//=", "%=", "**=", "@=", "&=", "|=", "^=",
                         ">>=", "<<=", ":="})
_WRAPPED = (_ASSIGN_OPS - {":="}) | {"return"}
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENCODING, tokenize.ENDMARKER}
# Python 3.12 splits f-strings into parts (with the names inside the braces as NAME tokens)
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)


@dataclass
class Span:
    a_lines: tuple[int, int]  # 1-based inclusive line range in submission a
    b_lines: tuple[int, int]  # the matching range in b


@dataclass
class Match:
    a: str  # student id, a < b
    b: str
    score: float  # see the module docstring
    spans: list[Span]  # longest first, at most MAX_SPANS


def _bound_names(toks):
    """(names, attributes) the file itself binds: assignment targets, parameters, loop and `as`
    targets, imports, defs; attributes it assigns, method names and identifier-like strings.
    Kept apart, so a local `mean` does not turn the file's `.mean(` calls into 'ID'. From the
    tokens, not the ast: a broken file has tokens too, and ast.walk costs more than tokenize."""
    names, attrs = set(), set()
    line = []
    for t in toks:
        if t.type == tokenize.NEWLINE or t.type == tokenize.ENDMARKER:
            _bind_line(line, names, attrs)
            line = []
        elif t.type == tokenize.NAME or t.type == tokenize.OP:
            line.append(t.string)
        elif t.type == tokenize.STRING:
            # register_buffer("running_mean", ...), getattr(self, "running_mean"): an attribute
            # the student named, so renaming it must not change the tokens
            v = t.string.lstrip("rRbBuU").strip("'\"")
            if v.isidentifier():
                attrs.add(v)
    _bind_line(line, names, attrs)
    return names, attrs


def _bind_line(line, names, attrs):
    depth, last_assign = 0, -1
    for i, s in enumerate(line):
        if s in "([{":
            depth += 1
        elif s in ")]}":
            depth -= 1
        elif depth == 0 and s in _ASSIGN_OPS:
            last_assign = i
    is_def = line[:1] == ["def"] or line[:2] == ["async", "def"]
    target = False  # between for and in, lambda and its colon
    for i, s in enumerate(line):
        if s in ("for", "lambda"):
            target = True
        elif s in ("in", ":"):
            target = False
        if not s.isidentifier() or keyword.iskeyword(s):
            continue
        prev = line[i - 1] if i else ""
        nxt = line[i + 1] if i + 1 < len(line) else ""
        if prev in ("def", "class"):
            names.add(s)
            attrs.add(s)
        elif prev == ".":
            if i < last_assign:
                attrs.add(s)
        elif i < last_assign or target or prev in ("as", "import", "global", "nonlocal") or nxt == ":=" or \
                (is_def and prev in ("(", ",", "*", "**") and nxt in (",", ")", "=", ":")):
            names.add(s)


def _raw_tokens(source):
    toks = []
    try:
        for t in tokenize.generate_tokens(io.StringIO(source).readline):
            toks.append(t)
    except (tokenize.TokenError, SyntaxError, ValueError):
        # unterminated bracket or string, bad dedent (IndentationError), ...: keep what came
        # before, so a broken submission is still compared on the part that reads as Python
        pass
    return toks


def normalise(source: str) -> list[tuple[str, int]]:
    """(token, line) pairs. Identifiers the file binds -> 'ID', strings -> 'STR', numbers -> 'NUM';
    keywords, operators, unshadowed builtins and attribute names the file does not bind (the torch
    API: .mean, .sqrt, .detach) are kept as written. Comments, docstrings (any statement that is
    only a string), line breaks, indentation and a trailing comma before a closing bracket are
    dropped. A source that does not tokenize gives the tokens before the error; never raises."""
    toks = _raw_tokens(source)
    names, attrs = _bound_names(toks)
    out, line, fdepth = [], [], 0
    prev = None  # previous significant raw token, to tell `.attr` from a plain name

    def flush():
        # a logical line of strings only is a docstring or a no-op: dropped
        if any(t != "STR" for t, _ in line):
            _unwrap(line)
            out.extend(line)
        line.clear()

    for t in toks:
        if fdepth:
            if t.type == _FSTRING_START:
                fdepth += 1
            elif t.type == _FSTRING_END:
                fdepth -= 1
            continue
        if t.type == tokenize.NEWLINE:
            flush()
            continue
        if t.type in _SKIP or (t.type == tokenize.ERRORTOKEN and not t.string.strip()):
            continue
        row = t.start[0]
        if t.type == tokenize.NAME:
            s = t.string
            if keyword.iskeyword(s):
                tok = s
            elif prev is not None and prev.string == ".":
                tok = "ID" if s in attrs else s
            elif s in _BUILTINS and s not in names:
                tok = s
            else:
                tok = "ID"
        elif t.type == tokenize.STRING or t.type == _FSTRING_START:
            if t.type == _FSTRING_START:
                fdepth = 1
            # "a" "b" (implicit concatenation) is one string
            tok = None if line and line[-1][0] == "STR" and prev is not None and prev.type in (
                tokenize.STRING, _FSTRING_START) else "STR"
        elif t.type == tokenize.NUMBER:
            tok = "NUM"
        else:
            tok = t.string
            if tok in (")", "]", "}") and line and line[-1][0] == ",":
                line.pop()  # black adds trailing commas; they mean nothing here
        if tok is not None:
            line.append((tok, row))
        prev = t
    flush()
    return out


def _unwrap(line):
    # black wraps a long right-hand side or return value in parentheses, `x = (\n  a + b\n)`;
    # around a whole right-hand side they never change the meaning (`(a, b)` is `a, b` there)
    while len(line) > 3 and line[-1][0] == ")":
        depth, m = 0, len(line) - 1
        for m in range(len(line) - 1, -1, -1):
            tok = line[m][0]
            if tok in (")", "]", "}"):
                depth += 1
            elif tok in ("(", "[", "{"):
                depth -= 1
                if depth == 0:
                    break
        if depth or m == 0 or m == len(line) - 2 or line[m][0] != "(" or line[m - 1][0] not in _WRAPPED:
            return
        del line[-1], line[m]


def _kgram_hashes(tokens, k):
    # hash() of a tuple of str is stable within a process, which is all the grouping needs;
    # nothing here depends on the hash values themselves, so results do not vary between runs
    return list(map(hash, zip(*(tokens[j:] for j in range(k)))))


def similar_pairs(sources: dict[str, str], template: str | None = None, threshold: float = 0.8,
                  k: int = 12) -> list[Match]:
    """Pairs at or above threshold, highest first (ties by ids); a pair that shares no counted
    k-gram is never listed, whatever the threshold."""
    ids = sorted(sources)
    streams = {s: normalise(sources[s] or "") for s in ids}
    grams = {s: _kgram_hashes([t for t, _ in streams[s]], k) for s in ids}
    ignored = set(_kgram_hashes([t for t, _ in normalise(template)], k)) if template else set()
    df = Counter()
    for s in ids:
        df.update(set(grams[s]) - ignored)
    if len(ids) >= 4:
        # in more than half the class: an idiom from the slides or a snippet everyone was given
        ignored |= {g for g, c in df.items() if 2 * c > len(ids)}

    # A k-gram's n-th occurrence in a file is an element of its own (n > 1: hashed with n), so
    # the size of a set intersection is the multiset overlap sum_g min(count_a(g), count_b(g)).
    # Elements are ordered rarest first, ties by hash, the same order in every file: the prefix
    # filter below needs one global order.
    order = sorted(g for g in df if g not in ignored)
    order.sort(key=df.__getitem__)  # stable: by count, then by hash
    rank = {g: r for r, g in enumerate(order)}
    rows, counted = [], {}
    for s in ids:
        c = Counter(grams[s])
        for g in [g for g in c if g not in rank]:
            del c[g]
        row = sorted(c, key=rank.__getitem__)
        if len(row) < c.total():
            row = [e for g in row for e in [g] + [hash((g, n)) for n in range(2, c[g] + 1)]]
        rows.append(row)
        counted[s] = c.keys()
    sets = [set(row) for row in rows]

    # Prefix filter (as in set-similarity joins): Dice >= t needs an overlap
    # o >= t * |A| / (2 - t) on either side, and two sets that overlap in o elements share one
    # of their |A| - o + 1 rarest elements. Indexing only those keeps the common-but-not-ignored
    # k-grams (a formula line half the class wrote alike) from costing every pair that has them.
    t = min(max(threshold, 0.0), 1.0)
    index, candidates = defaultdict(list), set()
    for i, row in enumerate(rows):
        need = math.ceil(t * len(row) / (2 - t) - 1e-9)
        for e in row[:len(row) - max(need, 1) + 1]:
            for j in index[e]:
                candidates.add((j, i))
            index[e].append(i)

    out, shown = [], {}
    for i, j in sorted(candidates):
        small, large = sorted((len(sets[i]), len(sets[j])))
        if 2 * small < t * (small + large):
            continue  # even a complete overlap would score below the threshold
        score = 2 * len(sets[i] & sets[j]) / (small + large)
        if score >= threshold:
            a, b = ids[i], ids[j]
            for s in (a, b):
                if s not in shown:
                    shown[s] = _ignored_tokens(grams[s], ignored, k)
            both = counted[a] & counted[b]
            out.append(Match(a, b, score, _spans(grams[a], streams[a], shown[a], grams[b], streams[b], shown[b],
                                                 both, k)))
    out.sort(key=lambda m: (-m.score, m.a, m.b))
    return out


def _ignored_tokens(grams, ignored, k):
    """1 for each token inside an ignored (template or common) k-gram."""
    marks, end = bytearray(len(grams) + k - 1), 0
    for i, g in enumerate(grams):
        if g in ignored:
            marks[max(i, end):i + k] = b"\1" * (i + k - max(i, end))
            end = i + k
    return marks


def _spans(ga, sa, ma, gb, sb, mb, both, k):
    where_b = defaultdict(list)
    for j, g in enumerate(gb):
        if g in both:
            where_b[g].append(j)
    runs = []  # (first, last k-gram start in a, diagonal j - i)
    na, nb = len(ga), len(gb)
    for i, g in enumerate(ga):
        for j in where_b.get(g, ()):
            if i and j and ga[i - 1] == gb[j - 1] and ga[i - 1] in both:
                continue  # inside the run that starts further up this diagonal
            d, e = j - i, i + 1
            while e < na and e + d < nb and ga[e] == gb[e + d] and ga[e] in both:
                e += 1
            runs.append((i, e - 1, d))
    # greedy tiling, longest run first: a statement that occurs twice (the two moving-average
    # updates normalise alike) also matches off the true diagonal, and loses to the long run
    runs.sort(key=lambda r: (r[0] - r[1], 2 * r[0] + r[2], r[0]))
    used_a, used_b = bytearray(len(sa)), bytearray(len(sb))
    tiles = []
    for first, last, d in runs:
        a0, a1, b0, b1 = first, last + k, first + d, last + d + k  # token ranges, end exclusive
        if used_a.find(1, a0, a1) >= 0 or used_b.find(1, b0, b1) >= 0:
            continue
        used_a[a0:a1] = b"\1" * (a1 - a0)
        used_b[b0:b1] = b"\1" * (b1 - b0)
        # a k-gram across the edge of the template (or of a common idiom) counts, but the
        # template's side of it is nobody's own code: shown from the first token that is
        while a1 - a0 > 1 and ma[a0] and mb[b0]:
            a0, b0 = a0 + 1, b0 + 1
        while a1 - a0 > 1 and ma[a1 - 1] and mb[b1 - 1]:
            a1, b1 = a1 - 1, b1 - 1
        tiles.append(Span((sa[a0][1], sa[a1 - 1][1]), (sb[b0][1], sb[b1 - 1][1])))

    tiles.sort(key=lambda s: (s.a_lines, s.b_lines))
    merged = []
    for s in tiles:
        p = merged[-1] if merged else None
        if p and s.a_lines[0] <= p.a_lines[1] + LINE_GAP + 1 and \
                p.b_lines[0] <= s.b_lines[0] <= p.b_lines[1] + LINE_GAP + 1:
            p.a_lines = (p.a_lines[0], max(p.a_lines[1], s.a_lines[1]))
            p.b_lines = (p.b_lines[0], max(p.b_lines[1], s.b_lines[1]))
        else:
            merged.append(Span(s.a_lines, s.b_lines))
    merged.sort(key=lambda s: (s.a_lines[0] - s.a_lines[1] + s.b_lines[0] - s.b_lines[1],
                               s.a_lines, s.b_lines))
    return merged[:MAX_SPANS]


def explain(match: Match, sources: dict[str, str], context: int = 0) -> str:
    """Plain text: the pair and its score, then per span "a 12-30 ~ b 40-58" and the span's first
    1 + context non-blank lines on each side."""
    a_lines = (sources.get(match.a) or "").splitlines()
    b_lines = (sources.get(match.b) or "").splitlines()
    width = max(len(match.a), len(match.b))
    out = [f"{match.a} ~ {match.b}: {match.score:.2f} ({len(match.spans)} matching regions)"]
    for sp in match.spans:
        out.append(f"  {match.a} {sp.a_lines[0]}-{sp.a_lines[1]} ~ {match.b} {sp.b_lines[0]}-{sp.b_lines[1]}")
        for who, lines, (lo, hi) in ((match.a, a_lines, sp.a_lines), (match.b, b_lines, sp.b_lines)):
            shown = [n for n in range(lo, min(hi, len(lines)) + 1) if lines[n - 1].strip()][:1 + context]
            out.extend(f"    {who:<{width}} {n:>4} | {lines[n - 1].rstrip()}" for n in shown)
    return "\n".join(out)
