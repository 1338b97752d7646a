"""The binaries as a user runs them: `python -m binaries.<name>` subprocesses on tiny data.

Subprocesses rather than flagsaver: every binary defines --workdir (and most --config),
so importing two of them into one test process is a DuplicateFlagError. The console
scripts of setup.py are checked where `pip install -e .` put them on PATH.
"""
import ast
import os
import re
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from eb_tf import io_utils
from tests.pipeline_testlib import ROOT, check_report_consistency, read_report, run_binary

SMOKE = "--config=configs/quickstart.py:smoke"
def _is_binary(name: str) -> bool:
    """A file of binaries/ that runs as a script (the others are the binaries' helpers)."""
    with open(os.path.join(ROOT, "binaries", name)) as f:
        return 'if __name__ == "__main__":' in f.read()


BINARIES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "binaries"))
                  if f.endswith(".py") and _is_binary(f))
NEEDS_CONFIG = ("eb_train", "eb_search", "eb_tune", "eb_bench")


def console_scripts():
    """{script name: binaries module} of setup.py's CONSOLE_SCRIPTS."""
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    entries = next(ast.literal_eval(node.value) for node in tree.body
                   if isinstance(node, ast.Assign)
                   and [t.id for t in node.targets] == ["CONSOLE_SCRIPTS"])
    scripts = {}
    for entry in entries:
        name, target = (s.strip() for s in entry.split("="))
        module, function = target.split(":")
        assert module.startswith("binaries.") and function == "run", entry
        scripts[name] = module[len("binaries."):]
    return scripts


def _help_body(text: str) -> str:
    """--help output without the line naming the main module (a path that differs)."""
    return "\n".join(line for line in text.splitlines() if not re.fullmatch(r"\S*/\S+:", line))


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("bin") / "run")
    proc = run_binary("eb_train", SMOKE, f"--workdir={workdir}", "--config.verbose=1")
    return workdir, proc


def test_eb_train_exits_0_prints_the_summary_and_writes_a_consistent_report(quickstart_run):
    workdir, proc = quickstart_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EB Train summary (method=eb" in proc.stdout
    assert "Epoch 1/4" in proc.stdout  # Keras progress output
    report = read_report(workdir)
    assert health_warnings(proc.stderr) == report["warnings"]  # quiet, also in a pipe
    assert report["eb"]["0.5"]["found"] in (True, False)
    # The summary's ratio to dense training is report.json's, recomputed from its numbers.
    vs = report["vs_dense"]
    ratio = vs["by_ratio"]["0.5"]["train"]["flops"] / vs["dense"]["flops"]
    assert f"training FLOPs {vs['by_ratio']['0.5']['train']['flops']:.3g} vs " \
           f"{vs['dense']['flops']:.3g} = {ratio:.3f}x" in proc.stdout
    # ... and its last line names report.md, whose plots exist.
    assert proc.stdout.strip().splitlines()[-1] == \
        f"report with plots: {os.path.join(workdir, 'report.md')}"
    with open(os.path.join(workdir, "report.md")) as f:
        images = re.findall(r"!\[[^]]*\]\((report/[^)]+\.png)\)", f.read())
    assert len(images) >= 4 and all(os.path.getsize(os.path.join(workdir, i)) for i in images)
    assert {"search", "draw", "retrain"} <= set(report["phases"])
    check_report_consistency(workdir, report)


# What a clean run may print on stderr: the warnings that matter, the run's HealthWarnings,
# one line each (the binaries print eb_tf's warnings without Python's file:line).
_HEALTH_WARNING = re.compile(r"HealthWarning: (.+)")
# What it must not print: TF's C++ and absl's Python log lines (I0000 00:00:..., W1201
# 22:11:32...), and the start-up lines TF prints whatever the log level.
_LOG_LINE = re.compile(r"[IWEF]\d{4} ")
_NOISE = ("cuInit", "oneDNN", "Sharding callback", "absl::InitializeLog", "cuda drivers",
          "XNNPACK", "Check your callbacks")


def health_warnings(stderr: str) -> list:
    """The HealthWarning messages of `stderr`, which must hold nothing else."""
    lines = stderr.splitlines()
    assert not [line for line in lines if _LOG_LINE.match(line)], stderr
    assert not [word for word in _NOISE if word in stderr], stderr
    matches = [_HEALTH_WARNING.fullmatch(line) for line in lines]
    assert all(matches), stderr
    return [m.group(1) for m in matches]


def _user_env() -> dict:
    """The user's environment: not the tests' TF_CPP_MIN_LOG_LEVEL (run_binary's)."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def run_on_a_terminal(name: str, *args: str):
    """`python -m binaries.<name> args...` with stdout on a terminal (a pty), stderr a pipe,
    in the user's environment: (return code, stdout bytes as the terminal got them, stderr)."""
    import pty  # POSIX only
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", f"binaries.{name}", *args], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=child, stderr=subprocess.PIPE,
                            env=_user_env())
    os.close(child)
    shown = []

    def read_terminal():
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the process closed the terminal
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        stderr = proc.stderr.read().decode()
        code = proc.wait(timeout=600)
    finally:
        proc.kill()
        reader.join(30)
        os.close(main)
    return code, b"".join(shown), stderr


@pytest.fixture(scope="module")
def terminal_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("terminal") / "run")
    return (workdir, *run_on_a_terminal("eb_train", SMOKE, "--config.export=float32",
                                        f"--workdir={workdir}"))


def test_a_clean_run_on_a_terminal_shows_progress_bars_and_only_warnings_that_matter(
        terminal_run):
    workdir, code, shown, stderr = terminal_run
    assert code == 0, stderr[-3000:]
    report = read_report(workdir)
    assert health_warnings(stderr) == report["warnings"]
    # The smoke run learns nothing by design (4 epochs on 256 images): its warning shows.
    assert any("at chance level" in w for w in report["warnings"]), report["warnings"]
    assert list(report["export"]) == ["float32"]  # TFLite converted and run: quiet too
    # The config asks for verbose=2; a terminal gets Keras' progress bar (redrawn: \b, \r).
    assert b"Epoch 1/4" in shown and b"\x08\r" in shown and b"[====" in shown, shown[-2000:]


def test_verbosity_0_brings_tf_and_absl_logs_back(terminal_run):
    workdir = terminal_run[0]
    proc = subprocess.run([sys.executable, "-m", "binaries.eb_export", f"--workdir={workdir}",
                           "--mode=float32", "--noevaluate", "--num_runs=1", "-v", "0"],
                          cwd=ROOT, capture_output=True, text=True, env=_user_env(),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert any("oneDNN custom operations are on" in line for line in lines), proc.stderr
    assert any(re.match(r"I0000 00:00:[\d.]+ +\d+ \S+\.cc:\d+\] ", line)  # C++ INFO
               for line in lines), proc.stderr
    assert any(re.match(r"I\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.py:\d+\] ", line)  # absl INFO
               for line in lines), proc.stderr


def test_mask_distance_writes_the_fig3_heatmap(quickstart_run, tmp_path):
    workdir, _ = quickstart_run
    out = str(tmp_path / "fig3.png")
    proc = run_binary("mask_distance", f"--workdir={workdir}", "--ratio=0.5", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    matrix = np.load(str(tmp_path / "fig3.npy"))
    epochs = read_report(workdir)["phases"]["search"]["epochs"]
    assert matrix.shape == (epochs, epochs)
    np.testing.assert_array_equal(matrix, matrix.T)
    np.testing.assert_array_equal(np.diag(matrix), 0.0)


def test_bad_config_value_is_a_usage_error_naming_the_field(tmp_path):
    workdir = str(tmp_path / "bad")
    proc = run_binary("eb_train", SMOKE, f"--workdir={workdir}", "--config.ratios=1.5")
    assert proc.returncode == 1
    assert "config.ratios=1.5 is invalid: must be in (0, 1)" in proc.stderr
    assert not os.path.exists(workdir)


def test_missing_config_file_fails_naming_it(tmp_path):
    proc = run_binary("eb_train", "--config=configs/nope.py", f"--workdir={tmp_path}/x")
    assert proc.returncode != 0
    assert "configs/nope.py" in proc.stderr
    assert not os.path.exists(tmp_path / "x")


@pytest.mark.parametrize("name", BINARIES)
def test_every_binary_imports_without_tensorflow_and_answers_help(name):
    code = (f"import sys; import binaries.{name}; "
            "print('tensorflow' in sys.modules, 'eb_tf' in sys.modules)")
    imported = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
    assert imported.stdout.split() == ["False", "False"], imported.stderr[-3000:]
    proc = run_binary(name, "--help", timeout=60)
    assert proc.returncode == 1, proc.stderr[-3000:]  # absl's --help exits with status 1
    assert f"python -m binaries.{name}" in proc.stdout and "\nflags:\n" in proc.stdout


@pytest.mark.parametrize("name", NEEDS_CONFIG)
def test_missing_config_is_absls_required_flag_error(name, tmp_path):
    proc = run_binary(name, f"--workdir={tmp_path}/w", timeout=60)
    assert proc.returncode == 1
    assert "flag --config=None: Flag --config must have a value other than None" in proc.stderr
    assert not os.path.exists(tmp_path / "w")


def test_extra_arguments_are_a_usage_error(tmp_path):
    proc = run_binary("eb_export", f"--workdir={tmp_path}/none", "extra", timeout=60)
    assert proc.returncode == 1
    assert "unexpected arguments: ['extra']" in proc.stderr


def _flag_error(proc) -> str:
    """The one line of a flag error: stderr is it and absl's hint (and TF's C++ logs)."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not re.match(
        r"[IWEF]\d{4} |WARNING: All log messages before absl::InitializeLog", line)]
    assert len(lines) == 2, lines
    assert lines[1] == "Pass --helpshort or --helpfull to see help on flags.", lines
    assert lines[0].startswith("FATAL Flags parsing error: flag --"), lines
    return lines[0]


_FIELDS = 'python -c "from eb_tf.pipeline import config; print(config.describe())"'
BAD_CONFIGS = [  # binary, arguments, what the one line says
    ("eb_search", (SMOKE, "--config.nonsense=1"),
     ("flag --config.nonsense=1: the config has no field 'nonsense'; its fields: " + _FIELDS,)),
    ("eb_prune", ("--config=configs/quickstart.py", "--config.epoch=3"),
     ("flag --config.epoch=3:", "(did you mean config.epochs?)", _FIELDS)),
    ("eb_tune", ("--config=configs/tune_quickstart.py:smoke", "--config.tune.oracel=grid"),
     ("(did you mean config.tune.oracle?)", "TuneConfig in eb_tf/tuning/config.py")),
    ("eb_bench", ("--config=configs/bench_cifar10.py:smoke", "--config.step_stps=1"),
     ("(did you mean config.step_steps?)", "bench.describe_options()")),
    ("eb_train", (SMOKE, "--config.epochs=abc"),
     ("flag --config.epochs=abc: invalid literal for int()",)),
    ("eb_train", ("--config=configs/missing.py", "--config.epochs=3"),
     ("flag --config=configs/missing.py: no such config file 'configs/missing.py'",)),
    ("eb_search", ("--config=configs/quickstart.py:bogus",),
     ("flag --config=configs/quickstart.py:bogus: config argument 'bogus' is not supported",)),
    ("eb_retrain", ("--config=configs",), ("'configs' is a folder, not a config file",)),
]


@pytest.mark.parametrize("name, args, words", BAD_CONFIGS)
def test_a_bad_config_is_a_one_line_flag_error_and_leaves_no_folder(name, args, words,
                                                                    tmp_path):
    proc = run_binary(name, *args, f"--workdir={tmp_path}/w", timeout=120)
    line = _flag_error(proc)
    for word in words:
        assert word in line, line
    assert os.listdir(tmp_path) == []


WORKDIR_BINARIES = {  # every binary with --workdir: what else it needs to get that far
    "eb_train": (SMOKE,), "eb_search": (SMOKE,), "eb_prune": (), "eb_retrain": (),
    "eb_export": (), "mask_distance": (), "eb_tune": ("--config=configs/tune_quickstart.py",),
    "eb_bench": ("--config=configs/bench_cifar10.py:smoke",)}


@pytest.mark.parametrize("name", sorted(WORKDIR_BINARIES))
def test_a_workdir_under_a_file_is_a_one_line_flag_error(name, tmp_path):
    (tmp_path / "file").write_text("x")
    proc = run_binary(name, *WORKDIR_BINARIES[name], f"--workdir={tmp_path}/file/run",
                      timeout=120)
    assert _flag_error(proc) == (f"FATAL Flags parsing error: flag --workdir={tmp_path}/file/"
                                 f"run: '{tmp_path}/file' is a file, not a folder")
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.parametrize("workdir, message", [
    ("{tmp}/file", "exists and is not a folder"),
    ("", "must name a folder"),  # not the current folder
    pytest.param("/sys/eb_tf_test", "cannot write in '/sys': ", marks=pytest.mark.skipif(
        not os.path.isdir("/sys"), reason="no /sys (not writable even by root)")),
])
def test_a_workdir_that_cannot_be_a_folder_is_a_one_line_flag_error(workdir, message,
                                                                    tmp_path):
    (tmp_path / "file").write_text("x")
    workdir = workdir.format(tmp=tmp_path)
    before = set(os.listdir(ROOT))
    proc = run_binary("eb_search", SMOKE, f"--workdir={workdir}", timeout=120)
    assert _flag_error(proc).startswith(
        f"FATAL Flags parsing error: flag --workdir={workdir}: {message}")
    assert os.listdir(tmp_path) == ["file"]
    assert not {"config.json", ".lock", "search"} & (set(os.listdir(ROOT)) - before)
    assert not workdir.startswith("/sys") or not os.path.exists(workdir)


@pytest.mark.parametrize("name", ["eb_export", "mask_distance"])
def test_reading_binaries_need_a_run_folder_and_leave_none(name, tmp_path):
    proc = run_binary(name, f"--workdir={tmp_path}/none", timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"--workdir '{tmp_path}/none' is not a run folder (no config.json); "
                           "run eb_search (or eb_train) there first"), last
    assert "--config" not in last     # these binaries take the run folder's own config
    assert os.listdir(tmp_path) == []


def test_phase_binary_without_config_needs_a_run_folder(tmp_path):
    proc = run_binary("eb_prune", f"--workdir={tmp_path}/none")
    assert proc.returncode == 1
    assert f"--workdir '{tmp_path}/none' is not a run folder (no config.json)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_console_scripts_are_installed_and_answer_help_as_the_binaries(tmp_path):
    scripts = console_scripts()
    assert set(scripts.values()) <= set(BINARIES)
    found = {name: shutil.which(name) for name in scripts}
    if not any(found.values()):
        pytest.skip(f"none of {sorted(scripts)} is on PATH: the package was not installed "
                    "with pip (pip install -e .[test])")
    missing = sorted(name for name, path in found.items() if path is None)
    assert not missing, f"{missing} not on PATH: run pip install -e .[test] again"
    for name, module in scripts.items():
        proc = subprocess.run([found[name], "--help"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)  # from another folder
        assert proc.returncode == 1, (name, proc.stderr[-3000:])  # absl's --help: 1
        expected = run_binary(module, "--help", timeout=60)
        assert _help_body(proc.stdout) == _help_body(expected.stdout), name
        assert "--workdir" in proc.stdout, name


@pytest.mark.slow
def test_eb_train_with_ratios_auto_tunes_in_workdir_tune_then_trains_the_choice(tmp_path):
    workdir = str(tmp_path / "auto")
    proc = run_binary("eb_train", "--config=configs/tune_quickstart.py:smoke",
                      f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = io_utils.read_json(os.path.join(workdir, "tune", "results.json"))["chosen"]
    report = read_report(workdir)
    assert list(report["final"]) == [f"{chosen['ratio']:g}"]
    saved = io_utils.read_json(os.path.join(workdir, "config.json"))["config"]
    assert saved["ratios"] == [chosen["ratio"]]
    again = run_binary("eb_retrain", f"--workdir={workdir}")  # the folder's resolved config
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.mark.slow
def test_phase_binaries_on_one_workdir_equal_eb_train(quickstart_run, tmp_path):
    whole, _ = quickstart_run
    workdir = str(tmp_path / "phases")
    for args in (("eb_search", SMOKE, "--config.verbose=1"), ("eb_prune",), ("eb_retrain",)):
        proc = run_binary(*args, f"--workdir={workdir}")
        assert proc.returncode == 0, (args, proc.stderr[-3000:])
    a, b = read_report(whole), read_report(workdir)
    assert a["eb"] == b["eb"] and a["final"] == b["final"]
    assert a["ticket"]["0.5"]["per_layer"] == b["ticket"]["0.5"]["per_layer"]
    load = run_python(f"import eb_tf; t = eb_tf.load_ticket({workdir!r}); "
                             "print('params', t.model.count_params(), t.meta['epoch'])")
    assert load.returncode == 0, load.stderr[-3000:]
    assert f"params {b['final']['0.5']['params']} {b['eb']['0.5']['epoch']}" in load.stdout


def run_python(*args: str):
    """`python -c ...` in a fresh process from the project root."""
    return subprocess.run([sys.executable, "-c", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.slow
def test_eb_train_on_mock_tfds_cifar10(tmp_path):
    workdir = str(tmp_path / "c10")
    code = ("import sys, tensorflow_datasets as tfds\n"
            "from absl import app\n"
            "from binaries import eb_train\n"
            "with tfds.testing.mock_data(num_examples=96):\n"
            "    app.run(eb_train.main, argv=sys.argv)\n")
    proc = run_python(code, SMOKE, f"--workdir={workdir}", "--config.dataset=cifar10",
                      "--config.model=vgg11", "--config.width=0.125",
                      "--config.train_subset=64")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = read_report(workdir)
    assert report["phases"]["search"]["samples"] == 64 * report["phases"]["search"]["epochs"]
    check_report_consistency(workdir, report)


@pytest.mark.parametrize("name, extra", [("eb_train", None), ("eb_prune", None),
                                         ("eb_bench", "# benchmark fields"),
                                         ("eb_tune", "# tuning fields")])
def test_describe_config_lists_every_field_without_other_flags(name, extra):
    import dataclasses  # pylint: disable=import-outside-toplevel
    from eb_tf.pipeline import config as eb_config  # pylint: disable=import-outside-toplevel
    proc = run_binary(name, "--describe_config", timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    for field in dataclasses.fields(eb_config.RunConfig):
        assert any(line.startswith(f"{field.name} = {field.default!r}: ") for line in lines), \
            field.name
    if extra:
        assert extra in lines
    assert "Its fields: --describe_config." in " ".join(run_binary(name, "--help").stdout.split())
