"""grader/intake.py: every input is built in tmp_path; nothing here runs through the sandbox."""
import io
import json
import stat
import struct
import zipfile

import pytest

from conftest import CORPUS
from grader import intake, slicing
from grader.intake import LineMap, cell_of, discover, locate, prepare, safe_id

BN = "import torch\nfrom torch import nn\n\n\nclass BatchNorm2d(nn.Module):\n    pass\n"
OTHER = "def helper():\n    return 1\n"


def _zip(path, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members:
            z.writestr(name, data)
    return path


def _tree(root):
    """Every path under root with its size: to show that nothing else was written."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size if p.is_file() else None)
            for p in root.rglob("*")}


def _size(root):
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _nb(*cells):
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                       "cells": [{"cell_type": kind, "metadata": {}, "source": src,
                                  **({"outputs": [{"output_type": "stream", "text": ["x = 1/0\n"]}],
                                      "execution_count": 1} if kind == "code" else {})}
                                 for kind, src in cells]})


@pytest.fixture
def staging(tmp_path):
    s = tmp_path / "staging"
    s.mkdir()
    return s


# -- .py ---------------------------------------------------------------------------------

def test_py_is_graded_as_is(tmp_path, staging):
    f = tmp_path / "alice.py"
    f.write_text(BN)
    got = prepare("alice", f, staging)
    assert (got.source, got.error, got.notes, got.student, got.line_map) == (f, "", [], "alice", None)
    assert not any(staging.iterdir())


def test_py_without_the_class_or_not_parsing_is_still_returned_with_a_note(tmp_path, staging):
    f = tmp_path / "bob.py"
    f.write_text(OTHER)
    got = prepare("bob", f, staging)
    assert got.source == f and not got.error and "no top-level class BatchNorm2d" in got.notes[0]
    f.write_text("class BatchNorm2d(:\n")
    got = prepare("bob", f, staging)
    assert got.source == f and not got.error and "does not parse (line 1" in got.notes[0]


def test_unsupported_entry(tmp_path, staging):
    f = tmp_path / "carol.pdf"
    f.write_bytes(b"%PDF")
    got = prepare("carol", f, staging)
    assert got.source is None and got.error == "unsupported entry type (use a folder, .py, .zip or .ipynb)"


# -- folders -------------------------------------------------------------------------------

def test_folder_with_one_candidate(tmp_path, staging):
    d = tmp_path / "dave"
    (d / "src").mkdir(parents=True)
    (d / "src" / "layers.py").write_text(BN)
    (d / "main.py").write_text(OTHER)
    got = prepare("dave", d, staging)
    assert got.source == d / "src" / "layers.py" and not got.error and got.notes == []


def test_folder_with_several_candidates_picks_deterministically_and_lists_them(tmp_path, staging):
    d = tmp_path / "erin"
    (d / "deep" / "er").mkdir(parents=True)
    for name in ("a.py", "model.py", "deep/er/my_bn.py", "deep/BatchNormLayer.py"):
        (d / name).write_text(BN)
    got = prepare("erin", d, staging)
    # a name with bn/batchnorm beats a shorter path; between those two the shorter path wins
    assert got.source == d / "deep" / "er" / "my_bn.py"
    note = next(n for n in got.notes if n.startswith("picked"))
    assert "4 files define class BatchNorm2d" in note
    assert all(n in note for n in ("a.py", "model.py", "deep/er/my_bn.py", "deep/BatchNormLayer.py"))
    assert prepare("erin", d, staging).source == got.source


def test_folder_tie_breaks_on_path_length_then_alphabet(tmp_path, staging):
    d = tmp_path / "fay"
    (d / "sub").mkdir(parents=True)
    for name in ("zz.py", "aa.py", "sub/a.py", "model.py"):
        (d / name).write_text(BN)
    got = prepare("fay", d, staging)
    assert got.source == d / "aa.py"


def test_folder_skips_checkpoints_venvs_caches_and_depth(tmp_path, staging):
    d = tmp_path / "gus"
    for sub in (".ipynb_checkpoints", "__pycache__", "venv/lib", "myenv", ".git", "a/b/c/d/e"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "myenv" / "pyvenv.cfg").write_text("home = /usr\n")
    for name in ("venv/lib/bn.py", "myenv/bn.py", "__pycache__/bn.py", ".git/bn.py", "a/b/c/d/e/bn.py"):
        (d / name).write_text(BN)
    (d / ".ipynb_checkpoints" / "bn-checkpoint.ipynb").write_text(_nb(("code", BN)))
    (d / "a" / "b" / "c" / "d" / "homework.py").write_text(BN)  # depth 4: still searched
    got = prepare("gus", d, staging)
    assert got.source == d / "a" / "b" / "c" / "d" / "homework.py" and not got.error
    assert not any(n.startswith("picked") for n in got.notes)


def test_folder_skips_symlinks(tmp_path, staging):
    outside = tmp_path / "secret.py"
    outside.write_text(BN)
    d = tmp_path / "hal"
    d.mkdir()
    (d / "bn.py").symlink_to(outside)
    (d / "mine.py").write_text(BN)
    got = prepare("hal", d, staging)
    assert got.source == d / "mine.py" and any("symlink" in n and "bn.py" in n for n in got.notes)


def test_folder_with_no_candidate_names_the_files(tmp_path, staging):
    d = tmp_path / "ivy"
    d.mkdir()
    (d / "a.py").write_text(OTHER)
    (d / "b.py").write_text("class BatchNorm1d:\n    pass\n")
    (d / "readme.txt").write_text("class BatchNorm2d")
    got = prepare("ivy", d, staging)
    assert got.source is None
    assert got.error == "no .py or .ipynb in ivy defines class BatchNorm2d (found: a.py, b.py)"


def test_folder_with_a_broken_file_that_holds_the_class_picks_it(tmp_path, staging):
    d = tmp_path / "jon"
    d.mkdir()
    (d / "hw.py").write_text("import torch\nclass BatchNorm2d(nn.Module:\n    pass\n")
    got = prepare("jon", d, staging)
    assert got.source == d / "hw.py" and not got.error and "does not parse" in " ".join(got.notes)


def test_folder_with_a_notebook(tmp_path, staging):
    d = tmp_path / "kim"
    d.mkdir()
    (d / "train.py").write_text(OTHER)
    (d / "hw9.ipynb").write_text(_nb(("code", BN), ("code", "train()\n")))
    got = prepare("kim", d, staging)
    assert got.source == staging / "kim.py" and not got.error
    text = got.source.read_text()
    assert "class BatchNorm2d" in text and "train()" not in slicing.slice_source(text)
    assert any(n.startswith("hw9.ipynb: notebook: kept 2 of 2") for n in got.notes)
    assert got.line_map.notebook == "hw9.ipynb" and got.line_map.script == "kim.py"
    assert cell_of(got.line_map, text.splitlines().index("train()") + 1) == (2, 1)


# -- zips ------------------------------------------------------------------------------------

def test_zip_happy_path(tmp_path, staging):
    z = _zip(tmp_path / "lee.zip", [("hw9/", b""), ("hw9/bn.py", BN), ("hw9/util.py", OTHER),
                                    ("__MACOSX/hw9/._bn.py", b"\x00\x05junk")])
    got = prepare("lee", z, staging)
    assert not got.error and got.source == staging / "lee" / "hw9" / "bn.py"
    assert got.source.read_text() == BN


def test_zip_with_dotdot_member_is_rejected_and_nothing_escapes(tmp_path):
    staging = tmp_path / "box" / "staging"
    staging.mkdir(parents=True)
    z = _zip(tmp_path / "mia.zip", [("bn.py", BN), ("../evil.py", "x = 1\n"), ("ok/../../evil2.py", "y\n")])
    before = _tree(tmp_path)
    got = prepare("mia", z, staging)
    assert got.source is None and "unsafe path" in got.error and "../evil.py" in got.error
    assert _tree(tmp_path) == before  # not even bn.py: every name is checked before extracting
    assert not (tmp_path / "box" / "evil.py").exists()


@pytest.mark.parametrize("name", ["/tmp/abs_evil.py", "C:/evil.py", "..\\evil.py", "\\\\server\\share\\x.py"])
def test_zip_with_absolute_or_drive_member_is_rejected(tmp_path, staging, name):
    z = tmp_path / "ned.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("bn.py", BN)
        zf.writestr(zipfile.ZipInfo(name), "x = 1\n")
    assert name in zipfile.ZipFile(z).namelist()  # the member really carries that name
    before = _tree(tmp_path)
    got = prepare("ned", z, staging)
    assert got.source is None and got.error.startswith("unsafe path in the zip")
    assert _tree(tmp_path) == before


def test_zip_symlink_member_is_skipped_with_a_note(tmp_path, staging):
    z = tmp_path / "oli.zip"
    with zipfile.ZipFile(z, "w") as zf:
        link = zipfile.ZipInfo("bn.py")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("real/homework.py", BN)
    got = prepare("oli", z, staging)
    assert not got.error and got.source == staging / "oli" / "real" / "homework.py"
    assert not (staging / "oli" / "bn.py").exists() and not (staging / "oli" / "bn.py").is_symlink()
    assert any("symlink" in n and "bn.py" in n for n in got.notes)


def test_zip_bomb_is_rejected_before_extracting(tmp_path, staging):
    z = _zip(tmp_path / "pat.zip", [("bn.py", BN), ("data.bin", bytes(60 * 10**6))])
    assert z.stat().st_size < 10**6
    got = prepare("pat", z, staging)
    assert got.source is None and "data.bin" in got.error
    assert _size(staging) < 51 * 10**6
    assert not (staging / "pat").exists()


def test_zip_many_members_over_the_total_or_too_compressed(tmp_path, staging):
    z = _zip(tmp_path / "q1.zip", [(f"f{i}.py", b"") for i in range(2001)], zipfile.ZIP_STORED)
    assert prepare("q1", z, staging).error == "the zip has 2001 members (at most 2000)"
    z = _zip(tmp_path / "q2.zip", [(f"f{i}.bin", bytes(9 * 10**6)) for i in range(6)], zipfile.ZIP_STORED)
    got = prepare("q2", z, staging)
    assert "54.0 MB uncompressed (at most 50 MB)" in got.error and not (staging / "q2").exists()
    z = _zip(tmp_path / "q3.zip", [("bn.py", BN), ("zeros.bin", bytes(2 * 10**6))])
    got = prepare("q3", z, staging)
    assert "compressed more than 200:1" in got.error and not (staging / "q3").exists()


def test_zip_whose_central_directory_lies_about_the_size(tmp_path, staging):
    data = bytes(range(256)) * (12 * 10**6 // 256)  # 12 MB, over the per-file cap, barely compressible
    z = _zip(tmp_path / "ray.zip", [("bn.py", BN), ("big.bin", data)], zipfile.ZIP_STORED)
    raw = bytearray(z.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")  # the last central directory header: big.bin's
    assert raw[cd + 46:cd + 46 + 7] == b"big.bin"
    raw[cd + 20:cd + 28] = struct.pack("<II", 1000, 1000)  # compressed and uncompressed size
    z.write_bytes(bytes(raw))
    assert zipfile.ZipFile(z).getinfo("big.bin").file_size == 1000
    got = prepare("ray", z, staging)
    assert got.source is None and "big.bin" in got.error
    assert _size(staging) < 11 * 10**6


def test_extraction_counts_the_bytes_that_come_out_not_the_declared_ones():
    out = io.BytesIO()
    assert intake._copy_capped(io.BytesIO(b"x" * 1000), out, 1000) == 1000
    out = io.BytesIO()
    with pytest.raises(intake._TooBig):
        intake._copy_capped(io.BytesIO(b"x" * 10**6), out, 1000)
    assert len(out.getvalue()) <= 1000


def test_corrupt_zip(tmp_path, staging):
    z = tmp_path / "sam.zip"
    z.write_bytes(b"PK\x03\x04 this is not really a zip")
    assert prepare("sam", z, staging).error == "not a readable zip file"
    good = _zip(tmp_path / "tim.zip", [("bn.py", BN * 20)]).read_bytes()
    z.write_bytes(good[:40] + bytes(40) + good[80:])  # the member's data damaged, the directory intact
    got = prepare("sam", z, staging)
    assert got.source is None and got.error.startswith("cannot extract bn.py from the zip")


# -- notebooks -------------------------------------------------------------------------------

EXPERIMENT_NB = [
    ("markdown", "# Homework 9\n"),
    ("code", ["import torch\n", "from torch import nn\n", "%matplotlib inline\n", "!pip install d2l\n"]),
    ("code", "EPS = 1e-5\ndevice = torch.device('cpu')\nSIZES = list(range(3))\n"),
    ("code", ["def batch_norm(X, eps=EPS):\n", "    return X\n", "\n", "\n", BN]),
    ("code", "net = make_lenet(BatchNorm2d)\nhistory = train(net, load_cifar())\nparams = net.parameters\n"
             "plt.show()\nfor epoch in range(3):\n    print(epoch)\n"),
    ("code", 'if __name__ == "__main__":\n    train(net, load_cifar())\n'),
    ("code", "%%bash\nls -la\n"),
    ("code", "torch.mean?\n"),
    ("code", "def broken(:\n    pass\n"),
]


def test_notebook_keeps_its_cells_and_the_slice_drops_experiments(tmp_path, staging):
    cells = list(EXPERIMENT_NB)  # the layer calls batch_norm, whose default is EPS
    cells[3] = ("code", "def batch_norm(X, eps=EPS):\n    return X\n\n\n"
                + BN.replace("    pass\n", "    def forward(self, X):\n        return batch_norm(X)\n"))
    f = tmp_path / "uma.ipynb"
    f.write_text(_nb(*cells))
    got = prepare("uma", f, staging)
    assert not got.error and got.source == staging / "uma.py"
    text = got.source.read_text()
    compile(text, "uma.py", "exec")
    for gone in ("pip install", "%matplotlib", "ls -la", "torch.mean?", "broken("):
        assert gone not in text, gone
    assert text.index("# --- cell 2 ---") < text.index("# --- cell 3 ---") < text.index("# --- cell 4 ---")
    sliced = slicing.slice_source(text)
    for gone in ("train(", "load_cifar", "__main__", "plt.show", "params =", "for epoch", "SIZES"):
        assert gone not in sliced, gone
    assert "EPS = 1e-5" in sliced and "import torch" in sliced
    ns = {}
    exec(sliced, ns)  # the test's own notebook: the slice loads without what it left out
    assert ns["BatchNorm2d"].__name__ == "BatchNorm2d" and ns["batch_norm"].__defaults__ == (1e-5,)
    assert got.notes[0] == "notebook: kept 5 of 8 code cells"  # 7: %%bash, 8: only a help line, 9: broken
    assert any("cell 9 does not parse (line 1" in n and "dropped" in n for n in got.notes)
    assert any("cell 7" in n and "%%" in n for n in got.notes)


def test_notebook_line_map_names_each_cell_and_line(tmp_path, staging):
    f = tmp_path / "uma.ipynb"
    f.write_text(_nb(*EXPERIMENT_NB))
    got = prepare("uma", f, staging)
    lines = got.source.read_text().splitlines()
    for cell_number, (kind, src) in enumerate(EXPERIMENT_NB, 1):
        src = "".join(src)
        for k, line in enumerate(src.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith(("%", "!")) and line in lines and cell_number < 7:
                n = lines.index(line) + 1
                assert cell_of(got.line_map, n) == (cell_number, k) or lines.count(line) > 1, (line, n)
    assert cell_of(got.line_map, 1) is None  # the grader's own header line
    assert cell_of(got.line_map, len(lines) + 5) is None


def test_notebook_cell_magic_body_keeps_the_cells_line_numbers(tmp_path, staging):
    f = tmp_path / "wes.ipynb"
    f.write_text(_nb(("code", "%%time\n" + BN)))
    got = prepare("wes", f, staging)
    lines = got.source.read_text().splitlines()
    n = lines.index("class BatchNorm2d(nn.Module):") + 1
    assert cell_of(got.line_map, n) == (1, 1 + BN.splitlines().index("class BatchNorm2d(nn.Module):") + 1)


def test_locate_rewrites_the_written_files_lines_only():
    m = LineMap("hw.ipynb", "hw.py", (None, (2, 1), (2, 2), (5, 7)))
    tb = ('Traceback:\n  File "hw.py", line 4, in forward\n    y = x.mean(dim=9)\n'
          '  File "/usr/lib/torch/nn/module.py", line 4, in _call\nIndexError: dim 9')
    got = locate(tb, m)
    assert 'File "hw.ipynb", cell 5, line 7, in forward' in got
    assert 'File "/usr/lib/torch/nn/module.py", line 4, in _call' in got  # not the student's file
    assert locate("invalid syntax (hw.py, line 3)", m) == "invalid syntax (hw.ipynb, cell 2, line 2)"
    assert locate("at hw.py:2", m) == "at hw.ipynb, cell 2, line 1"
    assert locate("d2l: line 2 imports it, and line 4 (in f) uses it", m) == \
        "d2l: cell 2, line 1 imports it, and cell 5, line 7 (in f) uses it"
    assert locate("line 1 is the grader's; line 99 is past the end", m) == "line 1 is the grader's; line 99 is past the end"
    assert locate("other.py, line 3", m) == "other.py, line 3"
    assert locate(tb, None) == tb


def test_notebook_whose_class_cell_does_not_parse_keeps_it_for_the_sandbox(tmp_path, staging):
    f = tmp_path / "vic.ipynb"
    f.write_text(_nb(("code", "import torch\n"), ("code", "class BatchNorm2d(nn.Module:\n    pass\n")))
    got = prepare("vic", f, staging)
    assert not got.error and "class BatchNorm2d(nn.Module:" in got.source.read_text()
    with pytest.raises(SyntaxError):
        compile(got.source.read_text(), "vic.py", "exec")
    assert any("cell 2 does not parse" in n and "kept" in n for n in got.notes)


def test_notebook_with_the_class_under_a_cell_magic(tmp_path, staging):
    f = tmp_path / "wes.ipynb"
    f.write_text(_nb(("code", "%%writefile bn.py\n" + BN)))
    got = prepare("wes", f, staging)
    assert "class BatchNorm2d" in got.source.read_text() and "%%" not in got.source.read_text()
    assert got.line_map is not None


def test_notebook_without_the_class_still_returns_a_file(tmp_path, staging):
    f = tmp_path / "xia.ipynb"
    f.write_text(_nb(("code", OTHER)))
    got = prepare("xia", f, staging)
    assert not got.error and got.source.exists() and any("no top-level class" in n for n in got.notes)


@pytest.mark.parametrize("content", [b"{not json", b'{"cells": 3}', b"[1, 2]", b"\xff\xfe\x00garbage"])
def test_notebook_that_is_not_readable(tmp_path, staging, content):
    f = tmp_path / "yan.ipynb"
    f.write_bytes(content)
    got = prepare("yan", f, staging)
    assert got.source is None and got.error == "not a readable notebook"


# -- ids -------------------------------------------------------------------------------------

def test_safe_id():
    assert safe_id("张三") == "张三" and safe_id("김철수") == "김철수"
    assert safe_id("Anna Maria") == "Anna_Maria" and safe_id("o'brien") == "o_brien"
    assert safe_id("../x.py") == "___x.py" and safe_id("a/b\\c") == "a_b_c"
    for bad in ("", ".", "..", "...", "/", "\n"):
        got = safe_id(bad)
        assert got not in ("", ".", "..") and not got.startswith(".") and "/" not in got
    assert len(safe_id("x" * 500)) <= 100


def test_discover(tmp_path):
    root = tmp_path / "class"
    root.mkdir()
    for name in (".DS_Store", ".hidden.py", "alice.py", "alice.zip", "bob", "张三.py", "a b.py", "a_b.py",
                 "notes.txt", "Carl.py", "carl.ipynb", "o'brien (2).py", "new\nline.py"):
        (root / name).mkdir() if name == "bob" else (root / name).write_text("")
    (root / "__MACOSX").mkdir()
    got = discover(root)
    ids = [i for i, _ in got]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    by_name = {p.name: i for i, p in got}
    assert set(by_name) == {"alice.py", "alice.zip", "bob", "张三.py", "a b.py", "a_b.py", "notes.txt",
                            "Carl.py", "carl.ipynb", "o'brien (2).py", "new\nline.py"}
    assert by_name["alice.py"] == "alice.py" and by_name["alice.zip"] == "alice.zip"
    assert by_name["bob"] == "bob" and by_name["张三.py"] == "张三" and by_name["notes.txt"] == "notes"
    assert (by_name["a b.py"], by_name["a_b.py"]) == ("a_b", "a_b-2")  # sorted entry names: ' ' < '_'
    assert {by_name["Carl.py"], by_name["carl.ipynb"]} == {"Carl", "carl-2"}  # one folder on macOS
    assert by_name["o'brien (2).py"] == "o_brien__2_" and by_name["new\nline.py"] == "new_line"
    assert discover(root) == got
    for sid, _ in got:
        assert safe_id(sid) == sid
    got_notes = prepare(by_name["notes.txt"], root / "notes.txt", tmp_path / "st")
    assert got_notes.error.startswith("unsupported entry type")


# -- the notebook corpus: graded through intake, the sandbox and the cell map ----------------

NOTEBOOKS = sorted(CORPUS.glob("notebook_*.ipynb"))


def _header(nb_path):
    """The notebook's first code cell, where its corpus header lines are (as in a .py's first lines)."""
    cells = json.loads(nb_path.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_corpus_verdict_and_reasons_name_cells(path, tmp_path, quick_rubric):
    from types import SimpleNamespace

    from conftest import ZYGOTE
    from grader.grading import grade_file
    from test_corpus import assert_verdict
    got = prepare(path.stem, path, tmp_path)
    assert not got.error and got.line_map is not None
    result = grade_file(got.source, quick_rubric, ZYGOTE, notes=got.notes, line_map=got.line_map)
    header = _header(path)
    assert_verdict(SimpleNamespace(name=path.name, read_text=lambda: header), result)
    reasons = [line.split(":", 1)[1].strip() for line in header.splitlines() if line.startswith("# reason:")]
    for want in reasons:
        assert want in result.reason, (want, result.reason)
    assert f"{path.stem}.py" not in result.reason  # the written file's name never reaches the student
