"""Grading on a cluster, the parts that need no scheduler: the shard from every index
convention (and the errors that name the fix), the CPUs a task may use, group-readable
outputs, a gradebook that cannot shrink or hide unreadable results, --finish after a failed
shard, --prepare's cache and its lock. tests/test_slurm.py runs the recipe on a real Slurm."""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import CORPUS, ROOT
from grader.cpus import default_jobs
from grader.shards import Shard, ShardError
from grader.cli import main
from grader.output import files

FAST = ["--no-train", "--quiet", "--jobs", "1"]


def _class(root, names=("alice", "bob", "carol", "dave", "erin", "frank")):
    root.mkdir()
    pick = ["correct_textbook.py", "mistake_reversed_momentum.py", "broken_syntax.py", "correct_var_mean.py",
            "mistake_eps_outside.py", "mistake_batch_stats_in_eval.py"]
    for name, f in zip(names, pick * 2):
        shutil.copyfile(CORPUS / f, root / f"{name}.py")
    return root


def _rows(out):
    with open(out / "gradebook.csv", newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- which shard

@pytest.mark.parametrize("env,count,want", [
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, None, (0, 4)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, None, (3, 4)),
    ({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "6",
      "SLURM_ARRAY_TASK_STEP": "2"}, None, (3, 4)),
    ({"JOB_COMPLETION_INDEX": "2"}, 3, (2, 3)),
    ({"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "2"}, None, (0, 2)),
])
def test_shard_from_each_schedulers_environment(env, count, want):
    s = Shard.from_env(env, count)
    assert (s.index, s.count) == want


@pytest.mark.parametrize("make,fragment", [
    (lambda: Shard.parse("0/4"), "--shard-index"),  # a zero-based array fed to --shard K/N
    (lambda: Shard.parse("5/4"), "between 1 and 4"),
    (lambda: Shard.of(4, 4), "--shard 4/4"),  # a one-based array fed to --shard-index
    (lambda: Shard.from_env({"JOB_COMPLETION_INDEX": "1"}), "--shard-count"),
    (lambda: Shard.from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0",
                             "SLURM_ARRAY_TASK_COUNT": "4"}, 3), "ungraded"),
    (lambda: Shard.from_env({}), "--shard-index"),
])
def test_impossible_shard_names_the_fix(make, fragment):
    with pytest.raises(ShardError) as e:
        make()
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_every_convention_covers_every_student_exactly_once():
    ids = [f"s{i:03d}" for i in range(200)]
    for n in (1, 3, 8):
        zero = [Shard.from_env({"SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_MIN": "0",
                                "SLURM_ARRAY_TASK_COUNT": str(n)}) for i in range(n)]
        one = [Shard.parse(f"{k}/{n}") for k in range(1, n + 1)]
        assert zero == one
        owners = [sum(s.owns(sid) for s in zero) for sid in ids]
        assert owners == [1] * len(ids)


def test_cli_out_of_range_shard_is_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    subs = _class(tmp_path / "subs", ("alice",))
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    for extra, fragment in ((["--shard", "0/4"], "--shard-index"), (["--shard-index", "4", "--shard-count", "4"],
                            "--shard 4/4"), (["--shard-from-env", "--shard-count", "3"], "ungraded"),
                            (["--shard", "1/2", "--shard-from-env"], "one way")):
        assert main([str(subs), "--out", str(tmp_path / "out")] + extra + FAST) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "out" / "alice").exists()


# ---------------------------------------------------------------- CPUs

def _cgroup(tmp_path, v2=True, quota="50000 100000"):
    root = tmp_path / "cg"
    if v2:
        leaf = root / "job_1" / "step_0"
        leaf.mkdir(parents=True)
        (root / "job_1" / "cpu.max").write_text(f"{quota}\n")
        (leaf / "cpu.max").write_text("max 100000\n")
        proc = "0::/job_1/step_0\n"
    else:
        leaf = root / "cpu,cpuacct" / "docker" / "abc"
        leaf.mkdir(parents=True)
        q, p = quota.split()
        (leaf / "cpu.cfs_quota_us").write_text(q + "\n")
        (leaf / "cpu.cfs_period_us").write_text(p + "\n")
        proc = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"
    (tmp_path / "cgroup").write_text(proc)
    return root, tmp_path / "cgroup"


@pytest.mark.parametrize("v2", [True, False])
def test_jobs_default_follows_the_cgroup_quota(tmp_path, v2):
    affinity = len(os.sched_getaffinity(0))
    root, proc = _cgroup(tmp_path, v2, quota="50000 100000")  # half a CPU: still one worker
    assert default_jobs(root, proc) == 1
    root, proc = _cgroup(tmp_path / "b", v2, quota="150000 100000")
    assert default_jobs(root, proc) == min(affinity, 2)
    root, proc = _cgroup(tmp_path / "c", v2, quota="-1 100000" if not v2 else "max 100000")
    assert default_jobs(root, proc) == affinity


def test_empty_jobs_is_the_default_and_bad_jobs_is_exit_2(tmp_path, capsys):
    subs = _class(tmp_path / "subs", ("alice",))
    out = tmp_path / "out"
    assert main([str(subs), "--out", str(out), "--jobs", "", "--no-train", "--quiet"]) == 0
    assert (out / "alice" / "results.json").exists()
    capsys.readouterr()
    assert main([str(subs), "--out", str(out), "--jobs", "0", "--no-train", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--jobs" in err


def test_torch_threads_follow_the_cpus_the_task_may_use():
    # pinned to one CPU (what Slurm's binding or taskset does): one torch thread, not the machine's
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
            "from grader.training.stage import cores; from grader.cpus import default_jobs;"
            "print(cores(), default_jobs())")
    got = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert got.stdout.split() == ["1", "1"]


# ---------------------------------------------------------------- shared folders

@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        files.write_atomic(tmp_path / "f.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == mode


def test_class_results_are_group_readable(tmp_path):
    subs = _class(tmp_path / "subs", ("alice", "bob"))
    old = os.umask(0o027)
    try:
        assert main([str(subs), "--out", str(tmp_path / "out")] + FAST) == 0
    finally:
        os.umask(old)
    for name in ("alice/results.json", "alice/report.html", "gradebook.csv", "summary.html"):
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o640, name


def test_gradebook_never_shrinks_without_force_and_names_unreadable_results(tmp_path, capsys):
    subs = _class(tmp_path / "subs", ("alice", "bob", "carol"))
    out = tmp_path / "out"
    assert main([str(subs), "--out", str(out)] + FAST) == 0
    before = (out / "gradebook.csv").read_bytes()
    (out / "bob" / "results.json").write_text("{half a fi")  # damaged
    capsys.readouterr()
    assert main(["--gradebook", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out / "bob" / "results.json") in err
    assert (out / "gradebook.csv").read_bytes() == before
    shutil.rmtree(out / "bob")
    assert main(["--gradebook", str(out)]) == 2
    err = capsys.readouterr().err
    assert "3 students" in err and "--force" in err
    assert (out / "gradebook.csv").read_bytes() == before
    assert main(["--gradebook", str(out), "--force"]) == 0
    assert sorted(r["id"] for r in _rows(out)) == ["alice", "carol"]


# ---------------------------------------------------------------- shards, a failure, the final step

def test_shards_do_not_write_the_gradebook_and_finish_recovers_a_failed_shard(tmp_path, capsys):
    subs = _class(tmp_path / "subs")
    one, arr = tmp_path / "one", tmp_path / "arr"
    assert main([str(subs), "--out", str(one)] + FAST) == 0
    killed = next(i for i in range(3) if Shard(i, 3).owns("alice"))  # alice's shard "was killed": it never ran
    for i in set(range(3)) - {killed}:
        assert main([str(subs), "--out", str(arr), "--shard-index", str(i), "--shard-count", "3"] + FAST) == 0
        assert not (arr / "gradebook.csv").exists()
    lost = [s for s in ("alice", "bob", "carol", "dave", "erin", "frank") if Shard(killed, 3).owns(s)]
    assert lost and all(not (arr / s).exists() for s in lost)
    capsys.readouterr()
    assert main([str(subs), "--out", str(arr), "--finish"] + FAST) == 0
    assert f"{len(lost)} students had no results" in capsys.readouterr().err
    assert _rows(arr) == _rows(one)
    rows = {r["id"]: r for r in _rows(one)}
    assert rows["alice"]["status"] == "graded" and rows["alice"]["score"] == rows["alice"]["max_score"]
    assert rows["carol"]["status"] == "error" and float(rows["bob"]["score"]) < float(rows["bob"]["max_score"])


# ---------------------------------------------------------------- warm once

def test_lock_excludes_another_process(tmp_path):
    probe = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\n"
             "try:\n fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('got')\n"
             "except BlockingIOError:\n print('busy')\n")
    with files.locked(tmp_path):
        held = subprocess.run([sys.executable, "-c", probe, str(tmp_path / ".lock")], capture_output=True, text=True)
    free = subprocess.run([sys.executable, "-c", probe, str(tmp_path / ".lock")], capture_output=True, text=True)
    assert (held.stdout.strip(), free.stdout.strip()) == ("busy", "got")


def test_prepare_warms_the_cache_and_tasks_then_never_download(tmp_path, capsys):
    from test_training import _rubric, make_folder
    data = make_folder(tmp_path / "d", n_train=20, n_test=5)
    cache = tmp_path / "cache"
    rubric = _rubric(tmp_path, epochs=1)
    assert main(["--prepare", "--data", str(data), "--cache", str(cache), "--rubric", str(rubric), "--quiet"]) == 0
    prepared = json.loads((cache / "prepared.json").read_text())
    assert (cache / f"baselines-{prepared['baseline_key'][:24]}.json").exists()
    assert "Prepared" in capsys.readouterr().out
    # a task given the prepared cache and a data path without CIFAR-10: an error, not a download
    sub = str(CORPUS / "correct_textbook.py")
    assert main([sub, "--data", str(tmp_path / "nowhere"), "--cache", str(cache), "--rubric", str(rubric),
                 "--quiet"]) == 2
    assert "no CIFAR-10 found" in capsys.readouterr().err
    assert main(["--prepare", "--no-train"]) == 2
