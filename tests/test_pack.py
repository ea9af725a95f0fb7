"""Check packs and the student edition's way of grading (grader/pack.py, checks/oracle.py,
grader/packmaker.py): the same verdicts as the full edition for the pack's seed, plain words
where a pack cannot answer, and a private seed that a layer copying the pack's numbers fails.
"""
import dataclasses
import html as htmllib
import json

import pytest
import torch

from conftest import CORPUS, ROOT, ZYGOTE, write
from grader import pack as P
from grader.checks.oracle import NotInPack, PackOracle
from grader.cli import main
from grader.grading import grade_file

FILES = sorted(CORPUS.glob("*.py"))
TEMPLATE_PACK = ROOT / "student_template" / "batchnorm.bnpack"


@pytest.fixture(scope="module")
def made(tmp_path_factory, quick_rubric):
    from grader import packmaker
    out = tmp_path_factory.mktemp("pack") / "hw9.bnpack"
    return packmaker.make(quick_rubric, (ROOT / "rubrics" / "batchnorm.yaml").read_text(), out)


def signature(result):
    return (result.status.value, result.score, result.max_score,
            [(s.outcome.check_id, s.outcome.passed, s.score, tuple(d.code for d in s.outcome.diagnoses),
              s.outcome.skipped) for s in result.checks], sorted(result.not_run))


def test_pack_is_a_few_mb_and_holds_what_the_checks_need(made, quick_rubric):
    assert made.size < 6_000_000, made.size  # a few MB: stored in the template repository
    assert made.meta["seed"] == quick_rubric.seed and made.meta["torch"] == torch.__version__
    checks = {k.split("|")[0] for k in made.entries}
    graded = {c.id for c in quick_rubric.checks if not c.id.startswith(("training.", "originality.", "structure."))
              and c.id != "advice.buffers"}
    assert graded <= checks, graded - checks
    ops = {k.split("|")[2] for k in made.entries}
    assert {"expected.train", "expected.eval", "train", "eval", "running", "grads", "state_mean", "lenet"} <= ops
    # every search candidate is there: a train-mode search on 4-D input tries singles and pairs
    entry = made.entries["forward.train.4d|" + next(k.split("|")[1] for k in made.entries
                                                     if k.startswith("forward.train.4d|train/") and k.endswith("|train"))
                         + "|train"]
    assert len(entry["out"]) > 100
    # no code: the file is JSON and raw bytes, and reading it back needs nothing but the format
    raw = open(made.path, "rb").read()
    assert raw.startswith(b"BNPACK 1\n") and b"def " not in raw[:200]


def test_damaged_or_foreign_files_are_one_clear_error(made, tmp_path):
    data = bytearray(open(made.path, "rb").read())
    data[-10] ^= 0xFF
    bad = tmp_path / "bad.bnpack"
    bad.write_bytes(bytes(data))
    with pytest.raises(P.PackError, match="damaged pack"):
        P.read(bad)
    other = tmp_path / "x.bnpack"
    other.write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(P.PackError, match="not a check pack"):
        P.read(other)
    with pytest.raises(P.PackError, match="no such pack"):
        P.read(tmp_path / "missing.bnpack")


def test_whole_corpus_same_verdicts_full_edition_and_pack(made, graded_once, quick_rubric):
    # the acceptance test: every corpus file, both editions, the pack's seed (the full
    # edition's results are test_corpus's when it ran in this session)
    oracle = PackOracle(P.read(made.path))
    differ = []
    for path in FILES:
        full = graded_once(path)
        packed = grade_file(path, quick_rubric, ZYGOTE, oracle=oracle)
        if signature(full) != signature(packed):
            differ.append((path.name, signature(full), signature(packed)))
    assert not differ, differ[:2]
    assert len(FILES) > 60


def test_a_layer_that_copies_the_packs_numbers_fails_the_private_seed(made, tmp_path, quick_rubric):
    # a "solution" that looks the inputs up in the pack and returns the stored expected output
    table = [(e["inputs"]["x"].float().tolist(), e["out"][""].float().tolist())
             for k, e in made.entries.items() if k.split("|")[0].startswith("forward.train") and
             "|train/" in k and k.endswith("|expected.train")]
    assert len(table) == 4
    sub = write(tmp_path, "copied.py", f'''
import torch
from torch import nn
TABLE = {table!r}

class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)

    def forward(self, X):
        for x, y in TABLE:
            x = torch.tensor(x)
            if x.shape == X.shape and torch.allclose(x, X.detach()):
                return torch.tensor(y) + 0 * X
        return X * self.gamma + self.beta
''')
    ids = ("forward.train.4d", "forward.train.2d")
    public = grade_file(sub, quick_rubric, ZYGOTE, oracle=PackOracle(P.read(made.path)))
    passed = {s.outcome.check_id: s.outcome.passed for s in public.checks}
    assert all(passed[i] for i in ids), passed
    private = grade_file(sub, dataclasses.replace(quick_rubric, seed=quick_rubric.seed + 7919), ZYGOTE)
    passed = {s.outcome.check_id: s.outcome.passed for s in private.checks}
    assert not any(passed[i] for i in ids), passed


def test_questions_the_pack_cannot_answer_are_said_plainly(made, quick_rubric):
    pack = P.read(made.path)
    pack.entries = {k: v for k, v in pack.entries.items() if not k.startswith("gradients|")}
    oracle = PackOracle(pack)
    with pytest.raises(NotInPack):
        oracle.answer("gradients", "float64/(2, 3, 3, 5)", "grads", None, {})
    result = grade_file(CORPUS / "correct_textbook.py", quick_rubric, ZYGOTE, oracle=oracle)
    not_run = dict(result.not_run)
    assert "cannot be checked with this pack" in not_run["gradients"]
    assert "gradients" not in {s.outcome.check_id for s in result.checks}
    assert all(s.passed for s in result.checks if not s.advisory)
    assert result.score == result.max_score  # what could not be checked counts nowhere
    # inputs that differ from the pack's (another seed) are not answered from it either
    other = grade_file(CORPUS / "correct_textbook.py", dataclasses.replace(quick_rubric, seed=1), ZYGOTE,
                       oracle=PackOracle(P.read(made.path)))
    skipped = [why for _, why in other.not_run if why.startswith("cannot be checked")]
    assert len(skipped) > 5 and "differ from the pack's" in skipped[0]


def test_cli_pack_command_and_grading_with_pack(tmp_path, capsys):
    out = tmp_path / "p.bnpack"
    assert main(["pack", "--out", str(out), "--no-train"]) == 0
    assert "Pack:" in capsys.readouterr().out
    j = tmp_path / "r.json"
    code = main([str(CORPUS / "mistake_reversed_momentum.py"), "--pack", str(out), "--no-train", "--no-color",
                 "--lang", "en", "--json", str(j)])
    assert code == 0
    assert "momentum convention reversed" in capsys.readouterr().out
    d = json.loads(j.read_text())
    assert d["extra_data"]["seed"] == P.read(out).meta["seed"]
    # a rubric whose seed is not the pack's: one line, exit 2
    rub = tmp_path / "r.yaml"
    rub.write_text((ROOT / "rubrics" / "batchnorm.yaml").read_text().replace("seed: 20241109", "seed: 5", 1))
    assert main([str(CORPUS / "correct_textbook.py"), "--pack", str(out), "--rubric", str(rub), "--no-train"]) == 2
    assert "made for seed" in capsys.readouterr().err


def test_template_pack_is_current():
    # the pack published with the template was made from the default rubric with this format
    pack = P.read(TEMPLATE_PACK)
    rubric_text = (ROOT / "rubrics" / "batchnorm.yaml").read_text()
    remake = "rerun `bn-grade pack --data data --out student_template/batchnorm.bnpack` (docs/student-edition.md)"
    assert pack.rubric_text == rubric_text, "rubrics/batchnorm.yaml changed: " + remake
    assert pack.size < 6_000_000
    # it carries the CPU baselines of the rubric's training configuration, trained by today's
    # training code (LeNet-5 harness and reference layer): students grade the training stage with it
    from grader import rubric as rubric_mod
    from grader.training.stage import RUN_FIELDS, code_hash
    cfg = rubric_mod.load(ROOT / "rubrics" / "batchnorm.yaml").training
    base = pack.baselines["cpu"]
    assert base["config"] == {k: getattr(cfg, k) for k in RUN_FIELDS}
    assert base["code"] == code_hash(), "the training code changed: " + remake
    for name in ("no_bn", "reference_bn"):
        run = base["runs"][name]
        assert len(run["train_loss"]) == len(run["val_loss"]) == cfg.epochs, name
    # on the real CIFAR-10 the reference BN beats no BN by far (docs/calibration.md)
    assert base["runs"]["reference_bn"]["test_accuracy"] > base["runs"]["no_bn"]["test_accuracy"] + 0.05


def test_training_stage_against_the_packs_baselines(tmp_path):
    # the pack carries the baselines of the rubric's training configuration; the student's run is
    # measured by the grader as in the full edition, with the same verdicts and accuracy
    from test_training import _rubric, make_folder
    root = make_folder(tmp_path / "d")
    rub = _rubric(tmp_path)
    out = tmp_path / "t.bnpack"
    assert main(["pack", "--rubric", str(rub), "--out", str(out), "--data", str(root), "--cache",
                 str(tmp_path / "c1"), "--quiet"]) == 0
    pack = P.read(out)
    assert set(pack.baselines) == {"cpu"} and set(pack.baselines["cpu"]["runs"]) == {"no_bn", "reference_bn"}
    sub = str(CORPUS / "correct_register_buffer.py")
    j_full, j_pack = tmp_path / "full.json", tmp_path / "pack.json"
    assert main([sub, "--rubric", str(rub), "--data", str(root), "--cache", str(tmp_path / "c1"), "--json",
                 str(j_full), "--quiet"]) == 0
    # a fresh cache: nothing of the full edition's runs is there, only what the pack holds
    assert main([sub, "--pack", str(out), "--data", str(root), "--cache", str(tmp_path / "c2"), "--json",
                 str(j_pack), "--quiet"]) == 0
    full, packed = json.loads(j_full.read_text()), json.loads(j_pack.read_text())
    assert full["score"] == packed["score"]
    ids = ("training.trains", "training.accuracy", "training.beats_no_bn")
    assert {i: full["extra_data"]["checks"][i]["passed"] for i in ids} == \
        {i: packed["extra_data"]["checks"][i]["passed"] for i in ids}
    runs_full, runs_pack = full["extra_data"]["training"]["runs"], packed["extra_data"]["training"]["runs"]
    for name in ("no_bn", "reference_bn", "student_bn"):
        assert runs_pack[name]["test_accuracy"] == runs_full[name]["test_accuracy"], name
    assert runs_pack["reference_bn"]["cached"] is True
    assert packed["extra_data"]["training"]["baselines_from"]["sha256"] == pack.sha256
    # the report says where the baselines came from
    html = tmp_path / "r.html"
    assert main([sub, "--pack", str(out), "--data", str(root), "--cache", str(tmp_path / "c2"), "--report",
                 str(html), "--quiet", "--lang", "en"]) == 0
    assert "come from the course's check pack (trained on cpu)" in htmllib.unescape(html.read_text())
    # a pack made with --no-train cannot train: one line, exit 2
    bare = tmp_path / "bare.bnpack"
    assert main(["pack", "--rubric", str(rub), "--out", str(bare), "--no-train", "--quiet"]) == 0
    assert main([sub, "--pack", str(bare), "--data", str(root), "--cache", str(tmp_path / "c3")]) == 2

    # per device type: a pack made on a GPU machine lends its runs to this one's (made here by
    # relabelling, as this machine has no GPU); this machine's own runs win where both have some
    gpu = tmp_path / "gpu.bnpack"
    base = dict(pack.baselines["cpu"], runs={k: dict(v, seconds=1.5) for k, v in pack.baselines["cpu"]["runs"].items()})
    P.write(dataclasses.replace(pack, baselines={"cuda": base, "cpu": dict(base, key="not this one")}), gpu)
    both = tmp_path / "both.bnpack"
    assert main(["pack", "--rubric", str(rub), "--out", str(both), "--data", str(root), "--cache", str(tmp_path / "c1"),
                 "--baselines-from", str(gpu), "--quiet"]) == 0
    merged = P.read(both).baselines
    assert set(merged) == {"cpu", "cuda"} and merged["cpu"]["key"] == pack.baselines["cpu"]["key"]
    assert merged["cuda"]["runs"]["no_bn"]["seconds"] == 1.5
    # a machine whose device type the pack lacks uses another type's runs and says so
    gpu_only, only_gpu = tmp_path / "gpu_only.bnpack", tmp_path / "only_gpu.bnpack"
    P.write(dataclasses.replace(pack, baselines={"cuda": base}), gpu_only)
    assert main(["pack", "--rubric", str(rub), "--out", str(only_gpu), "--no-train", "--baselines-from", str(gpu_only),
                 "--quiet"]) == 0
    j_gpu = tmp_path / "gpu.json"
    assert main([sub, "--pack", str(only_gpu), "--data", str(root), "--cache", str(tmp_path / "c4"), "--json",
                 str(j_gpu), "--quiet"]) == 0
    src = json.loads(j_gpu.read_text())["extra_data"]["training"]["baselines_from"]
    assert (src["device"], src["same_device"], src["same_data"]) == ("cuda", False, True)
    # baselines of another training configuration are refused, naming the file
    other = tmp_path / "other.bnpack"
    P.write(dataclasses.replace(pack, baselines={"cuda": dict(base, config=dict(base["config"], epochs=99))}), other)
    assert main(["pack", "--rubric", str(rub), "--out", str(tmp_path / "x.bnpack"), "--no-train", "--baselines-from",
                 str(other), "--quiet"]) == 2
    assert not (tmp_path / "x.bnpack").exists()
