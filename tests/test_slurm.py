"""docs/batch.md's Slurm recipe on a real Slurm: a single-node cluster (munged with its own key
and socket, slurmctld and slurmd on localhost, no accounting database) started in a temporary
folder, the page's own grade.sbatch and finish.sbatch submitted as documented (a zero-based
array of 3, one task killed, the final sweep with afterany), and the gradebook compared with a
single-machine run. Every daemon is stopped at the end by the PID it wrote.

Needs root (SlurmUser=root) and Debian's slurm-wlm and munge (.ci/run installs them): skipped
locally without them, a failure in CI.
"""
import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import CORPUS, ROOT
from grader.cli import main

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol")
STUDENTS = {"alice": "correct_textbook.py", "bob": "mistake_reversed_momentum.py", "carol": "broken_syntax.py",
            "dave": "correct_var_mean.py", "erin": "mistake_eps_outside.py", "frank": "mistake_batch_stats_in_eval.py",
            "gina": "mistake_momentum_ignored.py"}


def _tool(name):
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)),
                                      None)


def _need_slurm():
    missing = [d for d in DAEMONS if not _tool(d)]
    why = (f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge; CI installs them)" if missing
           else "a Slurm with SlurmUser=root needs root" if os.geteuid() != 0 else None)
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Slurm test: {why}")
        pytest.skip(why)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _mem_mb():
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) // 1024


def _script(name):
    """The fenced block that follows `name` in docs/batch.md: the test runs what the page says."""
    doc = (ROOT / "docs" / "batch.md").read_text()
    m = re.search(rf"^`{re.escape(name)}`.*?:\n```bash\n(.*?)```", doc, re.S | re.M)
    assert m, f"docs/batch.md has no {name} block"
    return m.group(1)


def _adapt(script, bn, hw, kill_task=None):
    """The page's script with this machine's paths; kill_task: that array task kills itself first
    (a task lost to the OOM killer or a cancel looks the same to Slurm: ended, not ok)."""
    lines = []
    for line in script.splitlines():
        if line.startswith("BN="):
            line = f"BN={bn}"
        elif line.startswith("HW="):
            line = f"HW={hw}"
        elif line.startswith("TRAIN="):
            line = "TRAIN=(--no-train)"
        elif line.startswith("#SBATCH --output="):
            line = line.replace("/shared/hw9", str(hw))
        elif line.startswith("#SBATCH --mem"):
            continue  # the node's memory is not a consumable here (no cgroups in a test container)
        lines.append(line)
        if kill_task is not None and line.startswith("HW="):
            lines.append(f'[ "$SLURM_ARRAY_TASK_ID" = "{kill_task}" ] && kill -9 $$')
    return "\n".join(lines) + "\n"


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.pidfiles = []
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self):
        r = self.root
        for d in ("munge", "state", "spool", "log"):
            (r / d).mkdir(mode=0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = r / "munge" / "sock"
        self.pidfiles.append(r / "munge" / "munged.pid")
        subprocess.run([_tool("munged"), f"--key-file={key}", f"--socket={sock}", f"--pid-file={self.pidfiles[-1]}",
                        f"--log-file={r / 'munge' / 'munged.log'}", f"--seed-file={r / 'munge' / 'seed'}", "--force"],
                       check=True, capture_output=True, timeout=30)
        ctld, slurmd = _free_ports(2)
        self.conf.write_text(f"""ClusterName=bntest
SlurmctldHost=localhost
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=sched_interval=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory={_mem_mb()} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
        self.pidfiles.append(r / "slurmctld.pid")
        subprocess.run([_tool("slurmctld"), "-f", str(self.conf), "-i"], check=True, env=self.env, timeout=30)
        self.pidfiles.append(r / "slurmd.pid")
        subprocess.run([_tool("slurmd"), "-f", str(self.conf), "-N", "localhost"], check=True, env=self.env,
                       timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = self.run("sinfo", "-h", "-o", "%T", check=False)
            if got.returncode == 0 and got.stdout.strip() in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        raise AssertionError(f"the node never came up: {got.stdout} {got.stderr}\n{self.logs()}")

    def run(self, *argv, check=True):
        return subprocess.run([_tool(argv[0]) or argv[0], *argv[1:]], env=self.env, capture_output=True, text=True,
                              check=check, timeout=30)

    def state(self, job):
        out = self.run("scontrol", "-o", "show", "job", str(job)).stdout
        return {(m.group(1), m.group(2)) for m in re.finditer(r"JobId=(\d+).*?JobState=(\S+)", out)}

    def logs(self):
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in (self.root / "log").glob("*.log"))

    def stop(self):
        # only the daemons this test started, by the PIDs they wrote; slurmd first so no job restarts
        for pidfile in reversed(self.pidfiles):
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)


def _bn_grade():
    # the documented way: this venv's bn-grade by its absolute path, else the checkout's grade.py
    script = Path(sys.executable).parent / "bn-grade"
    return str(script) if script.exists() else f"{sys.executable} {ROOT / 'grade.py'}"


@pytest.mark.timeout(240)
def test_documented_array_with_a_killed_task_ends_with_the_full_gradebook():
    _need_slurm()
    # a short path: munge's socket must fit a unix socket name (108 bytes)
    root = Path(tempfile.mkdtemp(prefix="bn-slurm-"))
    cluster = Cluster(root / "c")
    jobs = []
    try:
        (root / "c").mkdir()
        hw = root / "hw9"
        subs = hw / "submissions"
        subs.mkdir(parents=True)
        (hw / "logs").mkdir()
        for sid, f in STUDENTS.items():
            shutil.copyfile(CORPUS / f, subs / f"{sid}.py")
        one = root / "one"
        assert main([str(subs), "--out", str(one), "--no-train", "--quiet"]) == 0
        cluster.start()
        grade = root / "grade.sbatch"
        from grader.shards import Shard
        killed = next(i for i in range(3) if Shard(i, 3).owns("alice"))  # a task with students to lose
        grade.write_text(_adapt(_script("grade.sbatch"), _bn_grade(), hw, kill_task=killed))
        finish = root / "finish.sbatch"
        finish.write_text(_adapt(_script("finish.sbatch"), _bn_grade(), hw))
        assert "--array=0-7" in grade.read_text()  # zero-based, as documented; 3 tasks here
        t0 = time.monotonic()
        arr = cluster.run("sbatch", "--parsable", "--array=0-2", "--cpus-per-task=1", str(grade)).stdout.strip()
        jobs.append(arr)
        fin = cluster.run("sbatch", "--parsable", f"--dependency=afterany:{arr}", "--cpus-per-task=2",
                          str(finish)).stdout.strip()
        jobs.append(fin)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            states = {s for _, s in cluster.state(fin)}
            if states & {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}:
                break
            time.sleep(1)
        tasks = dict(cluster.state(arr))
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((hw / "logs").iterdir()))
        assert states == {"COMPLETED"}, f"final step {states}; array {tasks}\n{logs}\n{cluster.logs()}"
        assert sorted(tasks.values()) == ["COMPLETED", "COMPLETED", "FAILED"], tasks
        print(f"array + final step on Slurm: {time.monotonic() - t0:.0f} s")
        # the shards wrote no gradebook; the final step graded the killed task's share and wrote it
        lost = [s for s in STUDENTS if Shard(killed, 3).owns(s)]
        finish_log = next((hw / "logs").glob("bn-finish-*.out")).read_text()
        assert lost and f"{len(lost)} students had no results" in finish_log, finish_log
        assert (hw / "out" / "gradebook.csv").read_bytes() == (one / "gradebook.csv").read_bytes()
        # and it is a real gradebook, not two equally broken ones (a sandbox that cannot start)
        rows = {r["id"]: r for r in csv.DictReader(io.StringIO((one / "gradebook.csv").read_text("utf-8-sig")))}
        assert sorted(rows) == sorted(STUDENTS)
        assert rows["alice"]["status"] == "graded" and rows["alice"]["score"] == rows["alice"]["max_score"]
        assert rows["bob"]["status"] == "graded" and float(rows["bob"]["score"]) < float(rows["bob"]["max_score"])
        assert rows["carol"]["status"] == "error"
    finally:
        for job in jobs:
            cluster.run("scancel", job, check=False)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
