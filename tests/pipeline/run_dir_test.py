"""Tests of eb_tf.pipeline.run_dir: layout, resume-or-refuse by config hash, report updates."""
import dataclasses
import json
import os

import pytest

from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import run_dir


def _cfg(**kw):
    return eb_config.from_config_dict({"dataset": "digits", "model": "convnet", **kw})


def test_new_folder_gets_config_versions_and_empty_report(tmp_path):
    cfg = _cfg(epochs=12)
    rd = run_dir.RunDir.open(str(tmp_path / "run"), cfg)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved == {"config_hash": eb_config.config_hash(cfg), "config": cfg.to_dict()}
    versions = json.loads((tmp_path / "run" / "versions.json").read_text())
    assert {"python", "tensorflow", "tf_keras", "eb_tf", "numpy"} <= set(versions)
    report = rd.report()
    assert report["schema_version"] == run_dir.SCHEMA_VERSION == 1
    assert report["phases"] == {} and report["eb"] == {} and report["method"] == "eb"


def test_same_config_resumes_and_keeps_the_report(tmp_path):
    cfg = _cfg()
    run_dir.RunDir.open(str(tmp_path), cfg).update_report(eb={"0.5": {"epoch": 3}})
    again = run_dir.RunDir.open(str(tmp_path), dataclasses.replace(cfg, verbose=0))
    assert again.report()["eb"] == {"0.5": {"epoch": 3}}
    assert json.loads((tmp_path / "config.json").read_text())["config"]["verbose"] == 0


def _completed_an_epoch(rd):
    """What the search's checkpoint leaves after epoch 1: the folder is a real run now."""
    os.makedirs(rd.search_dir("ckpt"), exist_ok=True)
    with open(rd.search_dir("ckpt", "state.json"), "w") as f:
        json.dump({"epoch": 1}, f)
    return rd


def test_other_config_is_refused_naming_each_differing_field(tmp_path):
    _completed_an_epoch(run_dir.RunDir.open(str(tmp_path), _cfg(epochs=12)))
    with pytest.raises(ValueError) as info:
        run_dir.RunDir.open(str(tmp_path), _cfg(epochs=20, ratios=(0.3,)))
    message = str(info.value)
    assert "config.epochs: 12 in the folder vs 20 now" in message
    assert "config.ratios: [0.5] in the folder vs [0.3] now" in message
    assert "verbose" not in message


def test_existing_reads_the_folder_config_and_rejects_non_runs(tmp_path):
    cfg = _cfg(epochs=7)
    run_dir.RunDir.open(str(tmp_path / "run"), cfg)
    assert run_dir.RunDir.existing(str(tmp_path / "run")).cfg == cfg
    with pytest.raises(ValueError, match="is not a run folder .no config.json."):
        run_dir.RunDir.existing(str(tmp_path / "empty"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        run_dir.RunDir.open(str(tmp_path / "file"), cfg)


def test_update_report_merges_one_level_and_is_atomic(tmp_path):
    rd = run_dir.RunDir.open(str(tmp_path), _cfg())
    rd.update_report(phases={"search": {"done": True, "epochs": 4}})
    rd.update_report(phases={"draw": {"done": True}}, final={"0.5": {"test": 0.9}})
    report = rd.report()
    assert report["phases"] == {"search": {"done": True, "epochs": 4}, "draw": {"done": True}}
    assert rd.phase_done("search") and not rd.phase_done("retrain")
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_paths_and_ratio_keys(tmp_path):
    rd = run_dir.RunDir.open(str(tmp_path), _cfg(tensorboard=False))
    assert run_dir.ratio_key(0.5) == "p0.5" and run_dir.ratio_key(0.30) == "p0.3"
    assert rd.ticket_dir(0.5) == os.path.join(rd.path, "tickets", "p0.5")
    assert rd.ticket_dir(0.7, 12) == os.path.join(rd.path, "tickets", "p0.7_e12")
    assert rd.retrain_dir(0.5, "final.keras").endswith("retrain/p0.5/final.keras")
    assert rd.tb_dir("search") is None


def test_summary_table_lists_phases_and_models():
    report = {"method": "eb", "config_hash": "abc", "phases": {
        "search": {"epochs": 7, "seconds": 3.2, "flops": 1.5e9, "precision": "fp32"}},
        "eb": {"0.5": {"epoch": 7, "found": True}},
        "final": {"0.5": {"validation": 0.9, "test": 0.875, "params": 1000, "flops": 20000}}}
    table = run_dir.summary_table(report)
    assert "search        7       3.2      1.5e+09 fp32" in table
    assert "total         7       3.2      1.5e+09" in table
    assert run_dir.totals(report) == {"epochs": 7, "seconds": 3.2, "flops": 1_500_000_000}
    assert "0.5               7  True      1,000       20,000   0.9000   0.8750" in table


def test_folder_written_before_a_field_was_added_still_resumes(tmp_path):
    cfg = _cfg(epochs=9)
    rd = _completed_an_epoch(run_dir.RunDir.open(str(tmp_path), cfg))
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["config"]["tensorboard"], saved["config"]["nesterov"]  # "older" eb_tf
    saved["config_hash"] = "0ld0ld0ld0ld"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert run_dir.RunDir.open(str(tmp_path), cfg).hash == rd.hash
    assert json.loads((tmp_path / "config.json").read_text())["config"] == cfg.to_dict()
    saved["config"]["epochs"] = 10
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="config.epochs: 10 in the folder vs 9 now"):
        run_dir.RunDir.open(str(tmp_path), cfg)

