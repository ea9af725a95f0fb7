"""The training stage on small synthetic CIFAR-like data in both on-disk layouts (built here;
nothing from ../shared). Tiny epochs: these test the plumbing and the trust rules, not
accuracy."""
import json
import pickle

import pytest
import torch
import yaml
from torchvision.io import encode_jpeg, encode_png

from conftest import CORPUS, ROOT, ZYGOTE
from grader.cli import main
from grader.training import data

CLASSES = ["cat", "dog", "frog", "ship"]


def _images(n, k, gen):
    # class k: a colour and a stripe the network can learn in a few steps
    x = torch.randint(0, 60, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    x[:, k % 3] += 150
    x[:, :, :, 4 * k:4 * k + 4] = 255
    return x


def make_folder(root, n_train=40, n_test=10, ext="png"):
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for k, c in enumerate(CLASSES):
            d = root / split / c
            d.mkdir(parents=True)
            for i, img in enumerate(_images(n, k, gen)):
                enc = encode_png(img) if ext == "png" else encode_jpeg(img, quality=95)
                (d / f"{i:04d}.{ext}").write_bytes(bytes(enc.numpy()))
    return root


def make_batches(root, per_batch=30, n_test=20):
    gen = torch.Generator().manual_seed(1)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)

    def batch(n):
        labels = torch.randint(0, len(CLASSES), (n,), generator=gen)
        x = torch.stack([_images(1, int(k), gen)[0] for k in labels])
        return {"data": x.reshape(n, -1).numpy(), "labels": labels.tolist()}
    for i in range(1, 6):
        (d / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch)))
    (d / "test_batch").write_bytes(pickle.dumps(batch(n_test)))
    (d / "batches.meta").write_bytes(pickle.dumps({"label_names": CLASSES}))
    return root


def test_image_folder_decodes_once_then_loads_from_cache(tmp_path):
    root = make_folder(tmp_path / "d", ext="jpg")
    first = data.load(root, tmp_path / "cache", download=False)
    assert not first.cached and first.kind == "image-folder" and first.classes == CLASSES
    assert first.train_images.shape == (160, 3, 32, 32) and first.train_images.dtype == torch.uint8
    assert first.test_labels.tolist() == sorted(first.test_labels.tolist())
    second = data.load(root, tmp_path / "cache", download=False)
    assert second.cached and second.key == first.key
    assert torch.equal(second.train_images, first.train_images)
    # a new file is a new data set: the cache key changes
    img = _images(1, 0, torch.Generator().manual_seed(5))[0]
    (root / "train" / "cat" / "9999.png").write_bytes(bytes(encode_png(img).numpy()))
    third = data.load(root, tmp_path / "cache", download=False)
    assert not third.cached and third.key != first.key and len(third.train_labels) == 161


def test_folder_one_level_down_and_torchvision_layout(tmp_path):
    make_folder(tmp_path / "data" / "cifar10-jpeg")
    d = data.load(tmp_path / "data", tmp_path / "cache", download=False)
    assert d.kind == "image-folder" and len(d.test_labels) == 40
    b = data.load(make_batches(tmp_path / "tv"), tmp_path / "cache", download=False)
    assert b.kind == "torchvision" and b.train_images.shape == (150, 3, 32, 32) and b.classes == CLASSES
    assert data.load(tmp_path / "tv", tmp_path / "cache", download=False).cached


def test_pickled_batch_cannot_run_code(tmp_path):
    root = make_batches(tmp_path / "tv")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({"data": Evil(), "labels": []}))
    with pytest.raises(data.DataError, match="data_batch_3: not a CIFAR-10 batch"):
        data.load(root, tmp_path / "cache", download=False)


@pytest.mark.parametrize("damage, fragment", [
    (lambda r: (r / "train" / "dog" / "0003.jpg").write_bytes(b"not a jpeg"), "0003.jpg: not a readable JPEG"),
    (lambda r: (r / "train" / "dog" / "0004.jpg").write_bytes(bytes(encode_jpeg(
        torch.zeros(3, 16, 16, dtype=torch.uint8)).numpy())), "CIFAR-10 images are 32x32"),
    (lambda r: [p.unlink() for p in (r / "test" / "frog").iterdir()], "no .jpg/.jpeg/.png images"),
    (lambda r: (r / "test" / "extra").mkdir(), "differ from train/'s"),
])
def test_corrupt_data_is_one_clear_error(tmp_path, damage, fragment):
    root = make_folder(tmp_path / "d", ext="jpg")
    damage(root)
    with pytest.raises(data.DataError) as e:
        data.load(root, tmp_path / "cache", download=False)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def _rubric(tmp_path, **training):
    d = yaml.safe_load((ROOT / "rubrics" / "batchnorm.yaml").read_text())
    d["training"].update({"epochs": 2, "batch_size": 16, "lr": 0.5, "val_fraction": 0.2, "device": "cpu",
                          "time_limit_seconds": 120, **training})
    p = tmp_path / "rubric.yaml"
    p.write_text(yaml.safe_dump(d, allow_unicode=True))
    return p


def test_cli_missing_or_corrupt_data_exits_2(tmp_path, capsys):
    sub = str(CORPUS / "correct_textbook.py")
    assert main([sub, "--data", str(tmp_path / "nothing"), "--no-download", "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--no-train" in err and "--data" in err and "nothing" in err
    root = make_folder(tmp_path / "d", ext="jpg")
    (root / "test" / "cat" / "0001.jpg").write_bytes(b"\xff\xd8 broken")
    assert main([sub, "--data", str(root), "--cache", str(tmp_path / "c")]) == 2
    assert "0001.jpg: not a readable JPEG" in capsys.readouterr().err


def _stage(tmp_path, root, **training):
    from grader import rubric as R
    from grader.grading import known_checks
    from grader.training.stage import Stage
    rub = R.load(_rubric(tmp_path, **training), known_checks())
    ds = data.load(root, tmp_path / "cache", download=False)
    return rub, Stage(rub.training, ds, tmp_path / "cache")


def test_reference_as_student_reproduces_the_reference_run(tmp_path):
    # same initial weights, batches and formula: the parent's own measurement of the student's
    # trained state must give the reference run's numbers. The baseline trains through the
    # reference's fused path (torch's kernels, other rounding: test below) and on half the cores
    # beside the no-BN run, so the curves agree to rounding amplified by training, not bit for bit
    rub, stage = _stage(tmp_path, make_folder(tmp_path / "d"))
    outcomes, runs, flags, _ = stage.run_student(ZYGOTE, ROOT / "reference" / "batchnorm.py", rub.limits)
    assert flags == []
    n_test = len(stage.data.test_labels)
    assert runs["student_bn"].test_accuracy == pytest.approx(runs["reference_bn"].test_accuracy, abs=1 / n_test)
    assert runs["student_bn"].val_loss == pytest.approx(runs["reference_bn"].val_loss, rel=2e-3)
    assert {o.check_id: o.passed for o in outcomes}["training.accuracy"] is True
    assert not runs["reference_bn"].cached
    # the baselines are cached on disk: a new stage with the same configuration trains nothing
    _, again = _stage(tmp_path, tmp_path / "d")
    cached = again.baselines()
    assert cached["reference_bn"].cached and cached["reference_bn"].test_accuracy == runs["reference_bn"].test_accuracy
    _, other = _stage(tmp_path, tmp_path / "d", epochs=1)
    assert other.key() != stage.key()


def test_reported_numbers_that_disagree_with_the_parent_are_flagged(tmp_path):
    # batch statistics in eval: the worker's own validation loss differs from what the parent
    # measures with the reference BN holding the same trained state
    rub, stage = _stage(tmp_path, make_folder(tmp_path / "d"))
    _, runs, flags, _ = stage.run_student(ZYGOTE, CORPUS / "mistake_batch_stats_in_eval.py", rub.limits)
    assert "training_mismatch" in flags
    assert runs["student_bn"].test_accuracy is not None


def test_training_results_in_json_and_tests(tmp_path, capsys):
    root = make_batches(tmp_path / "tv")
    out = tmp_path / "r.json"
    code = main([str(CORPUS / "correct_register_buffer.py"), "--data", str(root), "--cache", str(tmp_path / "c"),
                 "--rubric", str(_rubric(tmp_path)), "--json", str(out), "--quiet"])
    assert code == 0
    d = json.loads(out.read_text())
    names = {t["name"].split(":")[0] for t in d["tests"]}
    assert {"training.trains", "training.accuracy", "training.beats_no_bn", "integration.lenet"} <= names
    t = d["extra_data"]["training"]
    assert t["device"] == "cpu" and t["epochs"] == 2 and t["seed"] == 0 and t["config"]["batch_size"] == 16
    assert t["dataset"]["kind"] == "torchvision" and t["dataset"]["n_train"] + t["dataset"]["n_val"] == 150
    assert t["dataset"]["n_test"] == 20
    for run in ("no_bn", "reference_bn", "student_bn"):
        r = t["runs"][run]
        assert 0 <= r["test_accuracy"] <= 1 and len(r["train_loss"]) == 2 and len(r["val_loss"]) == 2
        assert r["seconds"] >= 0 and isinstance(r["cached"], bool)
    assert "test accuracy: no BN" in capsys.readouterr().out


def test_hang_during_training_fails_the_training_checks_only(tmp_path):
    from conftest import TEMPLATE_OK, write
    sub = write(tmp_path, "slowtrain.py", TEMPLATE_OK.replace(
        "{extra}", "import time\n        if X.shape[0] > 8 and self.training:\n            time.sleep(600)"))
    rub, stage = _stage(tmp_path, make_folder(tmp_path / "d"), time_limit_seconds=3)
    outcomes, runs, _, _ = stage.run_student(ZYGOTE, sub, rub.limits)
    assert [o.passed for o in outcomes] == [False, False, False]
    assert "took longer than 3 s" in outcomes[0].message


@pytest.mark.parametrize("shape", [(8, 6, 5, 5), (16, 7), (4, 3, 2, 2)])
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("path", ["cpu", "device"])
def test_fused_reference_path_is_the_same_formula(shape, unbiased, path, monkeypatch):
    # the baselines train the reference BN through its fast step (on the CPU its own statistics
    # and torch's inference and backward kernels; on a GPU torch's training kernel, run here on
    # the CPU); in float64 both must agree with the plain path the checks use: output, every
    # gradient, the moving statistics
    from reference import fused as fused_mod
    from reference.batchnorm import BatchNorm2d
    from reference.fused import FusedBatchNorm2d
    if path == "device":
        monkeypatch.setattr(fused_mod, "train_step", fused_mod._device_step)
    gen = torch.Generator().manual_seed(0)
    plain = BatchNorm2d(shape[1], len(shape), unbiased_running_var=unbiased).double()
    fused = FusedBatchNorm2d(shape[1], len(shape), unbiased_running_var=unbiased).double()
    with torch.no_grad():
        plain.gamma.copy_(torch.randn(plain.gamma.shape, generator=gen, dtype=torch.float64))
        plain.beta.copy_(torch.randn(plain.beta.shape, generator=gen, dtype=torch.float64))
        fused.gamma.copy_(plain.gamma)
        fused.beta.copy_(plain.beta)
    w = torch.randn(shape, generator=gen, dtype=torch.float64)
    for step in range(3):
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + step
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = plain(xa), fused(xb)
        (ya * w).sum().backward()
        (yb * w).sum().backward()
        torch.testing.assert_close(yb, ya, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-10, atol=1e-12)
    for a, b in ((plain.gamma.grad, fused.gamma.grad), (plain.beta.grad, fused.beta.grad),
                 (plain.moving_mean, fused.moving_mean), (plain.moving_var, fused.moving_var)):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    plain.eval()
    fused.eval()
    torch.testing.assert_close(fused(x), plain(x), rtol=1e-10, atol=1e-12)


def test_pooling_is_avg_pool2d():
    from grader.training.lenet import avg_pool2
    import torch.nn.functional as F
    for shape in ((3, 6, 28, 28), (2, 16, 10, 10)):
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        torch.testing.assert_close(avg_pool2(x), F.avg_pool2d(x, 2), rtol=1e-15, atol=1e-15)
        assert torch.autograd.gradcheck(avg_pool2, (x,))
        g = torch.randn(avg_pool2(x).shape, dtype=torch.float64)
        (ga,) = torch.autograd.grad(avg_pool2(x), x, g)
        (gb,) = torch.autograd.grad(F.avg_pool2d(x, 2), x, g)
        assert torch.equal(ga, gb)
    odd = torch.randn(1, 2, 5, 5)
    assert torch.equal(avg_pool2(odd), F.avg_pool2d(odd, 2))
