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
    assert {f.name for f in fv.get_key_flags_for_module(__name__)} == {"config", "workdir"}
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
