"""How idle OpenMP threads should wait (grader/cpus.py), measured side by side in one run.

For each wait setting, in fresh interpreters (libgomp reads it once, when torch loads): LeNet-5
with a student's layer (default: the textbook's), batch 128, the grader's SGD, STEPS training
steps on random data, timed (a) alone on --threads threads and (b) two such runs at once, as when
something else wants the cores. Prints seconds per epoch of 352 steps and each setting's ratio
to the passive policy.

    python benchmarks/bench_openmp.py [--threads 2] [--steps 100] [--student FILE]
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "spin 20000 (the grader's)": {"GOMP_SPINCOUNT": "20000"},
            "libgomp default": {}}

CHILD = r'''
import importlib.util, sys, time
sys.path.insert(0, sys.argv[1])
import torch, torch.nn.functional as F
from grader.training import lenet
spec = importlib.util.spec_from_file_location("student", sys.argv[2])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
lenet.steady_malloc()
torch.set_num_threads(int(sys.argv[3]))
steps = int(sys.argv[4])
torch.manual_seed(0)
model = lenet.LeNet5(norm=lambda c, d: mod.BatchNorm2d(c, d))
opt = lenet.SGD(model.parameters(), lr=0.1, momentum=0.9)
x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
for i in range(steps + 10):  # the first 10 allocate and choose kernels
    if i == 10:
        t = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
print((time.perf_counter() - t) / steps * 352)
'''


def launch(env_extra, a):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    return subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), a.student, str(a.threads), str(a.steps)],
                            env=env, stdout=subprocess.PIPE, text=True)


def seconds(procs):
    out = [float(p.communicate()[0].split()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("a run failed")
    return sum(out) / len(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--student", default=str(ROOT / "tests" / "corpus" / "correct_textbook.py"))
    a = p.parse_args()
    alone, pair = {}, {}
    for name, env in SETTINGS.items():
        alone[name] = seconds([launch(env, a)])
        pair[name] = seconds([launch(env, a), launch(env, a)])
        print(f"{name:<28} alone {alone[name]:7.2f} s   two at once {pair[name]:7.2f} s each   (s per epoch, "
              f"{a.threads} threads)", flush=True)
    base = "passive"
    for name in SETTINGS:
        if name != base:
            print(f"ratio {name} / passive: alone {alone[name] / alone[base]:.2f}x, two at once "
                  f"{pair[name] / pair[base]:.2f}x")


if __name__ == "__main__":
    main()
