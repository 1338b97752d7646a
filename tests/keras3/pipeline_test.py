"""The pipeline with `config.keras_version=3`: the same run as tf_keras, in Keras 3.

The zoo builds the same initial weights in both Kerases and the data pipeline is the
same, so a Keras 3 smoke run must reproduce the tf_keras run: the EB epoch, every mask,
the losses of every epoch and the ticket's widths. Its files are Keras 3 files, it
resumes after an interruption to the same ticket, trains in bf16, exports to TFLite,
and the tf_keras-only features fail in one line before any training.
"""
import json
import os

import numpy as np
import pytest

from eb_tf.compat import keras3, saved_keras_version
from eb_tf.pipeline import config as eb_config
from eb_tf.pipeline import runner, trainer
from tests.pipeline_testlib import check_report_consistency, load, read_report, smoke_config


class Killed(Exception):
    pass


def _losses(workdir, phase):
    path = os.path.join(workdir, phase, "ckpt", "state.json")
    with open(path) as f:
        return [h["loss"] for h in json.load(f)["history"]]


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory):
    """{2: workdir, 3: workdir}: the same smoke run in tf_keras and in Keras 3."""
    root = tmp_path_factory.mktemp("kerases")
    out = {}
    for version in (2, 3):
        out[version] = str(root / f"keras{version}")
        runner.run(smoke_config(keras_version=version), out[version], print_summary=False)
    return out


def test_keras3_run_reproduces_the_tf_keras_run(both_runs):
    r2, r3 = read_report(both_runs[2]), read_report(both_runs[3])
    assert r3["eb"]["0.5"]["found"] and r3["eb"]["0.5"]["epoch"] == r2["eb"]["0.5"]["epoch"]
    np.testing.assert_allclose(r3["eb"]["0.5"]["distances"][-1],
                               r2["eb"]["0.5"]["distances"][-1], atol=1e-6)
    h2 = trainer.read_mask_history(os.path.join(both_runs[2], "search", "masks", "p0.5.npz"))
    h3 = trainer.read_mask_history(os.path.join(both_runs[3], "search", "masks", "p0.5.npz"))
    np.testing.assert_array_equal(h3["masks"], h2["masks"])
    for phase in ("search", os.path.join("retrain", "p0.5")):
        np.testing.assert_allclose(_losses(both_runs[3], phase), _losses(both_runs[2], phase),
                                   rtol=1e-4)
    t2, t3 = r2["ticket"]["0.5"], r3["ticket"]["0.5"]
    assert t3["channels"] == t2["channels"] and t3["flops"] == t2["flops"]
    assert r3["final"]["0.5"]["params"] == r2["final"]["0.5"]["params"]
    # The history names the rate as tf_keras does, whatever Keras logged.
    with open(os.path.join(both_runs[3], "search", "history.json")) as f:
        assert "lr" in json.load(f)[0]
    with open(os.path.join(both_runs[3], "versions.json")) as f:
        assert json.load(f)["keras"] == keras3.__version__


def test_keras3_run_writes_keras3_files_the_report_recomputes_from(both_runs):
    workdir = both_runs[3]
    for path in ("search/final.keras", "tickets/p0.5/model.keras",
                 "retrain/p0.5/final.keras"):
        assert saved_keras_version(os.path.join(workdir, path)) == 3, path
        assert isinstance(load(os.path.join(workdir, path)), keras3.Model), path
    assert os.path.exists(os.path.join(workdir, "search", "weights_e0.weights.h5"))
    assert os.path.exists(os.path.join(workdir, "search", "eb", "p0.5", "weights.weights.h5"))
    check_report_consistency(workdir, read_report(workdir))


def test_keras3_interrupted_search_resumes_to_the_same_ticket(both_runs, tmp_path,
                                                              monkeypatch):
    original = trainer.EpochCheckpoint.save

    def save(self, epoch):
        original(self, epoch)
        if epoch == 2:
            raise Killed("killed after the checkpoint of epoch 2")
    monkeypatch.setattr(trainer.EpochCheckpoint, "save", save)
    cfg, cut = smoke_config(keras_version=3), str(tmp_path / "cut")
    with pytest.raises(Killed):
        runner.run(cfg, cut, phases=("search",), print_summary=False)
    monkeypatch.undo()
    report = runner.run(cfg, cut, phases=("search",), print_summary=False)
    whole = read_report(both_runs[3])
    assert report["eb"] == whole["eb"]
    a = load(os.path.join(cut, "search", "final.keras")).get_weights()
    b = load(os.path.join(both_runs[3], "search", "final.keras")).get_weights()
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_keras3_bf16_search_and_retrain_export_a_float32_tflite(tmp_path):
    cfg = smoke_config(keras_version=3, search_precision="bf16", retrain_precision="bf16",
                       export="float32")
    report = runner.run(cfg, str(tmp_path / "bf16"), print_summary=False)
    assert report["phases"]["search"]["precision"] == "bf16"
    assert report["phases"]["retrain"]["precision"] == "bf16"
    final = load(str(tmp_path / "bf16" / "retrain" / "p0.5" / "final.keras"))
    assert {layer.dtype_policy.name for layer in final.layers} == {"float32"}
    rows = report["export"]["float32"]["models"]
    assert set(rows) == {"0.5"}
    assert os.path.getsize(tmp_path / "bf16" / rows["0.5"]["path"]) > 0
    assert abs(rows["0.5"]["keras_acc"] - rows["0.5"]["tflite_acc"]) <= 1 / 64


@pytest.mark.parametrize("field, value, needle", [
    ("search_precision", "int8", "config.search_precision='int8' is invalid with "
     "config.keras_version=3: fake-quant search is tfmot's"),
    ("retrain_precision", "int8", "config.retrain_precision='int8' is invalid with "
     "config.keras_version=3: QAT"),
    ("method", "snip", "config.method='snip' is invalid with config.keras_version=3"),
    ("keras_version", 4, "config.keras_version=4 is invalid: must be 2 (tf_keras) or 3"),
])
def test_tf_keras_only_fields_fail_in_one_line_with_keras3(field, value, needle):
    cfg = smoke_config(keras_version=3 if field != "keras_version" else 2)
    cfg[field] = value
    with pytest.raises(ValueError) as err:
        eb_config.from_config_dict(cfg)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_keras_version_is_part_of_the_identity_but_2_keeps_old_hashes():
    two = eb_config.from_config_dict(smoke_config())
    three = eb_config.from_config_dict(smoke_config(keras_version=3))
    assert eb_config.config_hash(two) != eb_config.config_hash(three)
    assert "keras_version" not in eb_config.UNHASHED_FIELDS
