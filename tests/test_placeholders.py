"""grader/sandbox/inside/placeholders.py, standalone: a fresh interpreter loads the module by its
file path (as the sandbox mounts it), installs it and imports a student file."""
import json
import subprocess
import sys
import textwrap

from conftest import ROOT

PLACEHOLDERS = ROOT / "grader" / "sandbox" / "inside" / "placeholders.py"

STUDENT = textwrap.dedent('''\
    import json
    from d2l import torch as d2l
    import matplotlib.pyplot as plt
    from IPython import display
    from IPython.display import clear_output
    import tqdm.auto
    from pandas import DataFrame as DF
    from d2l.torch import *
    try:
        import torch
    except ImportError:
        torch = None
    try:
        import seaborn
    except ImportError:
        seaborn = None
    import importlib
    late = importlib.import_module("wandb")


    def holding_them_is_free():
        return [d2l, plt, display, clear_output, DF, d2l.torch.Accumulator, repr(plt.show), json.dumps(1)]


    def use_d2l():
        return d2l.try_gpu()


    def use_plt():
        plt.show()


    def use_display():
        display.display("x")


    def use_clear_output():
        clear_output(wait=True)


    def use_tqdm():
        return list(tqdm.auto.tqdm(range(2)))


    def use_pandas():
        return DF({"a": [1]})


    def use_as_base_class():
        class Timer(d2l.Timer):
            pass


    def use_in_arithmetic():
        return 2 * late.config.lr


    def caught_as_import_error():
        try:
            return d2l.try_gpu()
        except ImportError:
            return "caught"
''')

DRIVER = textwrap.dedent('''\
    import importlib.util, json, sys
    placeholders_path, student, isolate, restrict = sys.argv[1:5]
    if isolate == "1":  # what the sandbox has: the standard library (and torch, not here)
        sys.path[:] = [p for p in sys.path if "-packages" not in p]
    spec = importlib.util.spec_from_file_location("placeholders", placeholders_path)
    placeholders = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(placeholders)
    placeholders.install(student if restrict == "1" else None)
    spec = importlib.util.spec_from_file_location("submission", student)
    sub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sub)
    out = {"torch": repr(getattr(sub, "torch", None)), "seaborn": repr(getattr(sub, "seaborn", None)),
           "free": len(sub.holding_them_is_free()) if hasattr(sub, "holding_them_is_free") else 0}
    for name in dir(sub):
        if name.startswith(("use_", "caught_")):
            try:
                out[name] = "returned " + repr(getattr(sub, name)())
            except Exception as e:
                out[name] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))
''')


def drive(tmp_path, student=STUDENT, isolate=True, restrict=True, extra=""):
    f = tmp_path / "hw9.py"
    f.write_text(student)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER + extra)
    p = subprocess.run([sys.executable, str(driver), str(PLACEHOLDERS), str(f), "1" if isolate else "0",
                        "1" if restrict else "0"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.splitlines()[-1])


def line_of(text, needle):
    return next(i for i, line in enumerate(STUDENT.splitlines(), 1) if needle in line)


def test_missing_packages_load_and_fail_only_when_used_naming_package_and_lines(tmp_path):
    got = drive(tmp_path)
    assert got["free"] == 8  # importing and holding them cost nothing
    # guarded imports are left alone, so the student's fallback runs; torch is never faked
    assert got["torch"] == "None" and got["seaborn"] == "None"
    cases = {
        "use_d2l": ("d2l", "from d2l import torch as d2l", "return d2l.try_gpu()", "d2l.try_gpu (d2l.torch.try_gpu)"),
        "use_plt": ("matplotlib", "import matplotlib.pyplot as plt", "plt.show()", "plt.show (matplotlib.pyplot.show)"),
        "use_display": ("IPython", "from IPython import display", 'display.display("x")',
                        "display.display (IPython.display.display)"),
        "use_clear_output": ("IPython", "from IPython.display import clear_output", "clear_output(wait=True)",
                             "clear_output (IPython.display.clear_output)"),
        "use_tqdm": ("tqdm", "import tqdm.auto", "tqdm.auto.tqdm(range(2))", "uses tqdm.auto.tqdm."),
        "use_pandas": ("pandas", "from pandas import DataFrame as DF", 'DF({"a": [1]})',
                       "DF (pandas.DataFrame)"),
        "use_as_base_class": ("d2l", "from d2l import torch as d2l", "class Timer(d2l.Timer)",
                              "d2l.Timer (d2l.torch.Timer)"),
        "use_in_arithmetic": ("wandb", 'late = importlib.import_module("wandb")', "return 2 * late.config.lr",
                              "wandb.config.lr"),
    }
    for fn, (package, imported, used, shown) in cases.items():
        msg = got[fn]
        assert msg.startswith(f"PackageNotInstalled: {package} is not installed where your code is graded"), msg
        assert f"line {line_of(STUDENT, imported)} imports it" in msg, msg
        assert f"line {line_of(STUDENT, used)} (in {fn}" in msg, msg
        assert shown in msg, msg
    assert got["caught_as_import_error"] == "returned 'caught'"


def test_real_packages_torch_and_the_standard_library_import_normally(tmp_path):
    student = textwrap.dedent('''\
        import yaml
        import json
        import torch
        import not_a_package_anywhere_xyz
        try:
            import torch.not_a_submodule
        except ImportError as e:
            sub_error = type(e).__name__
        try:
            import json.not_a_submodule
        except ImportError as e:
            std_error = type(e).__name__
        ns = {}
        try:
            exec("import another_missing_xyz", ns)  # code that is not the student's file
        except ImportError as e:
            exec_error = type(e).__name__
        def use_missing():
            return not_a_package_anywhere_xyz.thing()
        def use_real():
            return [bool(getattr(yaml, "__file__", None)), type(torch.zeros(1)).__name__, sub_error, std_error,
                    exec_error]
    ''')
    got = drive(tmp_path, student, isolate=False)
    assert got["use_real"] == "returned [True, 'Tensor', 'ModuleNotFoundError', 'ModuleNotFoundError', " \
                              "'ModuleNotFoundError']"
    assert got["use_missing"].startswith("PackageNotInstalled: not_a_package_anywhere_xyz is not installed")


def test_without_a_file_named_any_code_outside_the_installation_gets_placeholders(tmp_path):
    got = drive(tmp_path, restrict=False)
    assert got["use_d2l"].startswith("PackageNotInstalled: d2l is not installed") and got["torch"] == "None"


def test_with_a_file_named_other_files_imports_fail_as_usual(tmp_path):
    other = tmp_path / "helper_mod.py"
    other.write_text("import d2l_from_another_file\n")
    extra = textwrap.dedent('''
        sys.path.insert(0, str(__import__("pathlib").Path(student).parent))
        try:
            import helper_mod
            print("IMPORTED")
        except ImportError as e:
            print("REFUSED", type(e).__name__)
    ''')
    f = tmp_path / "hw9.py"
    f.write_text(STUDENT)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER + extra)
    p = subprocess.run([sys.executable, str(driver), str(PLACEHOLDERS), str(f), "1", "1"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "REFUSED ModuleNotFoundError"


def test_the_module_needs_only_the_standard_library():
    import ast
    tree = ast.parse(PLACEHOLDERS.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
