"""Tests of binaries/cli.py: the run flags, the `main` wrapper, the run config.

In-process on fresh FlagValues (no global flag is defined, so no DuplicateFlagError);
the one check of `cli.run` runs a binary in a subprocess, as a console script does.
"""
import os
import subprocess
import sys

import pytest
from absl import app, flags

from binaries import cli
from tests.pipeline_testlib import ROOT, smoke_config


def _fresh(**kwargs):
    fv = flags.FlagValues()
    return fv, cli.define_run_flags("Run folder.", flag_values=fv, **kwargs)


_TINY_CONFIG = """
import ml_collections

def get_config(arg=None):
    if arg not in (None, "small"):
        raise ValueError(f"config argument {arg!r} is not supported")
    return ml_collections.ConfigDict({"epochs": 3, "lr": 0.1,
                                      "tune": {"oracle": "grid", "trials": 2}})
"""


def _parse(fv, monkeypatch, *args):
    """fv(argv), with sys.argv = argv: ml_collections reads the overrides from sys.argv."""
    argv = ["prog", *args]
    monkeypatch.setattr(sys, "argv", argv)
    return fv(argv)


def _tiny_config(tmp_path, text=_TINY_CONFIG):
    path = tmp_path / "tiny_config.py"
    path.write_text(text)
    return str(path)


def test_main_rejects_extra_arguments_without_running_the_body():
    calls = []
    wrapped = cli.main(lambda: calls.append(1))
    with pytest.raises(app.UsageError, match=r"^unexpected arguments: \['extra'\]$"):
        wrapped(["prog", "extra"])
    assert calls == []
    wrapped(["prog"])
    assert calls == [1]


def test_main_turns_a_value_error_into_a_usage_error_with_the_same_message():
    def body():
        raise ValueError("config.ratios=1.5 is invalid: must be in (0, 1)")
    with pytest.raises(app.UsageError) as info:
        cli.main(body)(["prog"])
    assert str(info.value) == "config.ratios=1.5 is invalid: must be in (0, 1)"
    assert isinstance(info.value.__cause__, ValueError)


def test_main_lets_other_errors_through_and_keeps_the_body_name():
    def body():
        raise KeyError("bug")
    wrapped = cli.main(body)
    assert wrapped.__name__ == "body" and wrapped.__module__ == __name__
    with pytest.raises(KeyError):
        wrapped(["prog"])


def test_missing_config_is_absls_required_flag_error():
    fv, holders = _fresh(config_help="Run config.")
    with pytest.raises(flags.IllegalFlagValueError,
                       match="Flag --config must have a value other than None"):
        fv(["prog", "--workdir=/tmp/w"])
    assert holders.config is not None


def test_missing_workdir_is_an_error_even_when_config_is_optional():
    fv, _ = _fresh(config_help="Optional config.", config_required=False)
    with pytest.raises(flags.IllegalFlagValueError,
                       match="Flag --workdir must have a value other than None"):
        fv(["prog"])


def test_optional_config_parses_to_none():
    fv, holders = _fresh(config_help="Optional config.", config_required=False)
    fv(["prog", "--workdir=/tmp/w"])
    assert holders.config.value is None and holders.workdir.value == "/tmp/w"


def test_without_config_help_only_workdir_is_defined():
    fv, holders = _fresh()
    assert holders.config is None and "config" not in fv and "workdir" in fv


def test_the_flags_belong_to_the_calling_binary_so_its_help_lists_them():
    fv, _ = _fresh(config_help="Run config.")
    assert {f.name for f in fv.get_key_flags_for_module(__name__)} == {"config", "workdir",
                                                                   "describe_config"}
    assert fv.get_key_flags_for_module(cli.__name__) == []


def test_resolve_config_without_config_reads_the_run_folder(tmp_path):
    from eb_tf.pipeline import config as eb_config
    from eb_tf.pipeline import run_dir
    with pytest.raises(ValueError, match="is not a run folder"):
        cli.resolve_config(None, str(tmp_path / "none"))
    cfg = eb_config.from_config_dict(smoke_config())
    run_dir.RunDir.open(str(tmp_path / "run"), cfg)
    assert cli.resolve_config(None, str(tmp_path / "run")) == cfg


def test_resolve_config_tunes_ratios_auto_in_workdir_tune(monkeypatch, tmp_path):
    from eb_tf import tuning
    calls = []
    monkeypatch.setattr(tuning, "resolve_auto",
                        lambda config, workdir, splits: calls.append((config, workdir, splits))
                        or "chosen")
    auto = smoke_config(ratios=("auto",), max_flops=1e4)
    assert cli.resolve_config(auto, str(tmp_path)) == "chosen"
    assert calls == [(auto, os.path.join(str(tmp_path), "tune"), None)]
    plain = smoke_config()
    assert cli.resolve_config(plain, str(tmp_path)) is plain and len(calls) == 1


def test_run_pipeline_runs_the_resolved_config_with_the_phases(monkeypatch, tmp_path):
    from eb_tf import pipeline
    calls = []
    monkeypatch.setattr(pipeline, "run", lambda *a, **k: calls.append((a, k)) or {"r": 1})
    monkeypatch.setattr(cli, "resolve_config", lambda config, workdir: ("resolved", config))
    assert cli.run_pipeline("cfg", "w", phases=["draw"]) == {"r": 1}
    cli.run_pipeline("cfg", "w")
    assert calls == [((("resolved", "cfg"), "w"), {"phases": ("draw",)}),
                     ((("resolved", "cfg"), "w"), {})]


def test_run_lends_the_docstring_and_flags_to_a_console_scripts_main():
    # A console script's __main__ is pip's wrapper: here `python -c`, no docstring.
    proc = subprocess.run([sys.executable, "-c", "from binaries import eb_export; eb_export.run()",
                           "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr  # absl's --help exits with 1
    assert proc.stdout.startswith("Export a finished EB Train run to TFLite")
    for flag in ("--workdir", "--mode", "--side_by_side", "--num_runs"):
        assert flag in proc.stdout


@pytest.mark.parametrize("override, hint", [
    ("--config.epoch=5", " (did you mean config.epochs?)"),
    ("--config.tune.oracel=random", " (did you mean config.tune.oracle?)"),
    ("--config.nonsense=1", ""),
])
def test_an_unknown_config_field_is_one_line_naming_the_closest_fields(
        override, hint, monkeypatch, tmp_path):
    fv, _ = _fresh(config_help="Run config.", fields_help="see FIELDS.md")
    args = (f"--config={_tiny_config(tmp_path)}", "--config.lr=0.5", override,
            f"--workdir={tmp_path}/w")
    with pytest.raises((AttributeError, KeyError)):  # ml_collections' error, a traceback
        _parse(fv, monkeypatch, *args)
    field = override.split("=")[0][len("--config."):]
    assert cli.unknown_field_message(["prog", *args], fv) == (
        f"flag {override}: the config has no field {field!r}{hint}; its fields: see FIELDS.md")


def test_known_config_fields_have_no_unknown_field_message(monkeypatch, tmp_path):
    fv, holders = _fresh(config_help="Run config.")
    args = (f"--config={_tiny_config(tmp_path)}", "--config.tune.trials=4",
            f"--workdir={tmp_path}/w")
    _parse(fv, monkeypatch, *args)
    assert holders.config.value.tune.trials == 4
    assert cli.unknown_field_message(["prog", *args], fv) is None


@pytest.mark.parametrize("config, message", [
    ("missing.py", "no such config file 'missing.py'"),
    ("{tmp}", "'{tmp}' is a folder, not a config file"),
    ("{tiny}:huge", "config argument 'huge' is not supported"),
    ("{empty}", "'{empty}' is not a config file: it has no get_config(arg) function"),
])
def test_a_config_file_that_cannot_be_loaded_is_a_one_line_flag_error(
        config, message, monkeypatch, tmp_path):
    names = {"tmp": str(tmp_path), "tiny": _tiny_config(tmp_path),
             "empty": str(tmp_path / "empty.py")}
    (tmp_path / "empty.py").write_text("X = 1\n")
    config, message = config.format(**names), message.format(**names)
    fv, _ = _fresh(config_help="Run config.")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "config_config", raising=False)  # ml_collections
    # loads every config file as this module, into the one an earlier test loaded
    with pytest.raises(flags.IllegalFlagValueError) as info:  # also under an override
        _parse(fv, monkeypatch, f"--config={config}", "--config.epochs=2",
               f"--workdir={tmp_path}/w")
    assert str(info.value).startswith(f"flag --config={config}: {message}")
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


def _workdir_cases(tmp_path):
    (tmp_path / "file").write_text("x")
    cases = [(str(tmp_path / "file" / "run"), f"'{tmp_path}/file' is a file, not a folder"),
             (str(tmp_path / "file"), "exists and is not a folder"),
             ("", "must name a folder")]
    if os.path.isdir("/sys"):  # not writable, even by root
        cases.append(("/sys/eb_tf_test/run", "cannot write in '/sys': "))
    return cases


def test_a_workdir_that_cannot_be_a_folder_is_a_flag_error_and_nothing_is_made(tmp_path):
    for workdir, message in _workdir_cases(tmp_path):
        fv, _ = _fresh()
        with pytest.raises(flags.IllegalFlagValueError) as info:
            fv(["prog", f"--workdir={workdir}"])
        assert str(info.value).startswith(f"flag --workdir={workdir}: {message}"), workdir
        assert not os.path.exists(workdir) or workdir == str(tmp_path / "file")
    assert os.listdir(tmp_path) == ["file"]  # no write check left behind


def test_a_new_or_writable_workdir_passes_and_nothing_is_made(tmp_path):
    for workdir in (tmp_path / "a" / "b", tmp_path):
        fv, holders = _fresh()
        fv(["prog", f"--workdir={workdir}"])
        assert holders.workdir.value == str(workdir)
    assert os.listdir(tmp_path) == []


def test_path_validators_check_files_and_folders_when_given(tmp_path):
    (tmp_path / "file").write_text("x")
    fv = flags.FlagValues()
    flags.DEFINE_string("out", None, "A file.", flag_values=fv)
    flags.DEFINE_string("cache", None, "A folder.", flag_values=fv)
    cli.register_path_validator("out", cli.check_file, flag_values=fv)
    cli.register_path_validator("cache", cli.check_folder, flag_values=fv)
    fv(["prog", "--out=", f"--cache={tmp_path}/new"])  # "" and None: the default
    for args, message in (
            ([f"--out={tmp_path}/file/x.png"], f"flag --out={tmp_path}/file/x.png: "
             f"'{tmp_path}/file' is a file, not a folder"),
            ([f"--out={tmp_path}"], f"flag --out={tmp_path}: is a folder, not a file"),
            ([f"--cache={tmp_path}/file"], f"flag --cache={tmp_path}/file: exists and is not")):
        fv.unparse_flags()
        with pytest.raises(flags.IllegalFlagValueError, match=f"^{message}"):
            fv(["prog", *args])
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.parametrize("verbose, tty, expected", [
    (2, True, 1), (1, True, 1),     # a terminal: a progress bar per epoch
    (1, False, 2), (2, False, 2),   # a log file or a pipe: one line per epoch
    (0, True, 0), (0, False, 0),    # silent stays silent
])
def test_keras_progress_follows_the_terminal(verbose, tty, expected):
    config = smoke_config(verbose=verbose)
    config.lock()
    chosen = cli.keras_progress(config, argv=["prog"], tty=tty)
    assert chosen.verbose == expected
    assert config.verbose == verbose  # a copy, still locked, else the config itself
    assert (chosen is config) == (expected == verbose) and chosen.is_locked
    assert chosen.to_dict() == {**config.to_dict(), "verbose": expected}


def test_keras_progress_keeps_a_verbose_given_on_the_command_line(tmp_path):
    (tmp_path / "flags").write_text("--config.verbose=2\n")
    config = smoke_config(verbose=2)
    for argv in (["prog", "--config.verbose=2"], ["prog", "--config.verbose", "2"],
                 ["prog", f"--flagfile={tmp_path}/flags"]):
        assert cli.keras_progress(config, argv=argv, tty=True) is config, argv


def test_keras_progress_replaces_the_field_of_a_run_config():
    from eb_tf.pipeline import config as eb_config
    cfg = eb_config.from_config_dict(smoke_config(verbose=2))
    assert cli.keras_progress(cfg, argv=["prog"], tty=True) == eb_config.from_config_dict(
        smoke_config(verbose=1))
    assert cli.keras_progress(cfg, argv=["prog"], tty=False) is cfg
