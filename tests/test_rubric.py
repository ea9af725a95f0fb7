import pytest
import yaml

from grader import rubric as R
from grader.grading import known_checks

CHECKS = known_checks()
from grader.cli import main

DEFAULT = R.DEFAULT_RUBRIC


def _write(tmp_path, data, name="r.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, allow_unicode=True))
    return p


def _base():
    return yaml.safe_load(DEFAULT.read_text())


def test_default_rubric_loads_with_every_check():
    r = R.load(None, CHECKS)
    assert sorted(c.id for c in r.checks) == sorted(CHECKS)
    assert len(r.sha256) == 64 and r.path.endswith("batchnorm.yaml")
    assert all(c.title["zh"] and c.title["en"] for c in r.checks)
    assert r.tolerance(None, "float64").rtol == 1e-7


def test_seed_per_check_is_base_plus_crc32_of_id():
    import zlib
    r = R.load(None, CHECKS)
    assert r.seed_for("gradients") == (r.seed + zlib.crc32(b"gradients")) % 2**31
    assert r.seed_for("gradients") != r.seed_for("eval.forward")


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.update(sede=1), "unknown key 'sede'"),
    (lambda d: d["limits"].update(load_secs=3), "limits: unknown key 'load_secs'"),
    (lambda d: d["checks"][2].update(pointz=3), "checks[2]: unknown key 'pointz'"),
    (lambda d: d["checks"][0].update(points="ten"), "checks[0].points: expected a number"),
    (lambda d: d.update(seed=1.5), "seed: expected a whole number"),
    (lambda d: d["checks"][1].update(visibility="secret"), "checks[1].visibility: 'secret' is not one of"),
    (lambda d: d["checks"][3].update(id="forward.trian"), "unknown check 'forward.trian'"),
    (lambda d: d["checks"].append(dict(d["checks"][0])), "appears twice"),
    (lambda d: d["checks"][0]["title"].pop("zh"), "needs both 'en' and 'zh'"),
    (lambda d: d.update(running_var="both"), "running_var: 'both' is not one of"),
    (lambda d: d["tolerances"].update(float8={"rtol": 1, "atol": 1}), "tolerances.float8: unknown dtype"),
    (lambda d: d["checks"][0].update(advisory="yes"), "checks[0].advisory: expected true or false"),
    (lambda d: d["limits"].update(call_seconds=0), "limits.call_seconds: must be positive"),
    (lambda d: d.pop("seed"), "seed: missing"),
    (lambda d: d["checks"][0].update(points=float("nan")), "checks[0].points: expected a finite number"),
    (lambda d: d["tolerances"]["float32"].update(atol=float("inf")), "expected a finite number"),
])
def test_bad_rubric_is_one_error_naming_file_and_key(tmp_path, mutate, fragment):
    data = _base()
    mutate(data)
    p = _write(tmp_path, data)
    with pytest.raises(R.RubricError) as e:
        R.load(p, CHECKS)
    msg = str(e.value)
    assert msg.startswith(str(p)) and fragment in msg and "\n" not in msg


def test_not_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("checks: [\n  - id: x\n   bad")
    with pytest.raises(R.RubricError, match="not valid YAML"):
        R.load(p, CHECKS)
    with pytest.raises(R.RubricError, match="no such rubric file"):
        R.load(tmp_path / "nope.yaml", CHECKS)


def test_partial_tolerances_merge_over_defaults(tmp_path):
    data = _base()
    data["tolerances"] = {"float32": {"rtol": 1e-5, "atol": 1e-4}}
    r = R.load(_write(tmp_path, data), CHECKS)
    assert r.tolerance(None, "float32").atol == 1e-4
    assert r.tolerance(None, "float64").atol == 1e-7


def test_cli_bad_rubric_exits_2_with_one_line(tmp_path, capsys):
    data = _base()
    data["checks"][0]["pointz"] = 1
    p = _write(tmp_path, data)
    code = main([str(DEFAULT.parent.parent / "reference" / "batchnorm.py"), "--rubric", str(p), "--no-train"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(p) in err and "pointz" in err
