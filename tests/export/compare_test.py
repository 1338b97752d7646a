"""Tests of eb_tf/export/compare.py: the dense-vs-ticket side-by-side table."""
import os

import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras


def _net(width, name):
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3)(x), name=name)


def test_compare_models_rows_ratios_and_markdown(tmp_path):
    dense, slim = _net(32, "dense"), _net(16, "slim")
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(20, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=20)
    table = eb_tf.compare_models({"dense": dense, "slim p=0.5": slim},
                                 modes=("float32", "int8"), data=(x, y),
                                 representative_data=x, num_threads=2, num_runs=5,
                                 warmup=1, out_dir=str(tmp_path))
    rows = table.rows
    assert [(r["model"], r["mode"]) for r in rows] == [
        ("dense", "float32"), ("dense", "int8"), ("slim p=0.5", "float32"),
        ("slim p=0.5", "int8")]
    flops = eb_tf.count_flops(dense).total, eb_tf.count_flops(slim).total
    for row in rows[:2]:
        assert row["flops"] == flops[0]
        assert row["flops_ratio"] == row["size_ratio"] == row["latency_ratio_1t"] == 1.0
    for row in rows[2:]:
        assert row["flops_ratio"] == pytest.approx(flops[1] / flops[0])
        assert 0.2 < row["size_ratio"] < 0.5             # conv weights shrink ~4x
        assert row["threads_n"] == 2 and row["latency_ms_nt"] > 0
    for row in rows:
        assert os.path.getsize(row["path"]) == row["size_bytes"]
        assert row["gzip_bytes"] < row["size_bytes"]
        model = dense if row["model"] == "dense" else slim
        assert row["keras_acc"] == eb_tf.evaluate_accuracy(model, (x, y))
        assert row["tflite_acc"] == eb_tf.evaluate_accuracy(row["path"], (x, y))
    assert rows[1]["size_bytes"] < 0.5 * rows[0]["size_bytes"]    # int8 vs float32
    assert [r["input_dtypes"] for r in rows] == [("float32",), ("int8",)] * 2
    assert [r["calibration"] for r in rows] == ["none", "representative"] * 2
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.tflite")) == [
        "dense/model_float32.tflite", "dense/model_int8.tflite",
        "slim_p_0.5/model_float32.tflite", "slim_p_0.5/model_int8.tflite"]
    lines = table.markdown().splitlines()
    assert lines[0].startswith("| model | mode | MFLOPs | FLOPs x | size KiB |")
    assert "| ms 2 thr |" in lines[0] and len(lines) == 2 + len(rows)
    assert lines[4].startswith(f"| slim p=0.5 | float32 | {flops[1] / 1e6:.2f} | "
                               f"{flops[1] / flops[0]:.3f} |")


def test_compare_models_without_data_leaves_accuracy_empty():
    table = eb_tf.compare_models({"a": _net(4, "a")}, modes="dynamic", num_runs=2, warmup=0)
    (row,) = table.rows
    assert row["keras_acc"] is None and row["tflite_acc"] is None and row["path"] is None
    assert row["mode"] == "dynamic" and row["size_ratio"] == 1.0
    assert table.markdown().splitlines()[2].endswith("| - | - |")


def test_compare_models_rejects_bad_input():
    with pytest.raises(ValueError, match="models is empty"):
        eb_tf.compare_models({})
    with pytest.raises(ValueError, match=r"mode='fp8' is not a TFLite export mode"):
        eb_tf.compare_models({"a": _net(4, "a")}, modes=("float32", "fp8"))
    with pytest.raises(ValueError, match=r"compare_models \(model 'b'\) expects a Keras model"):
        eb_tf.compare_models({"a": _net(4, "a"), "b": "b.keras"})


def test_magnitude_pruned_zeroes_half_of_each_kernel_and_keeps_shapes():
    from eb_tf.export.compare import magnitude_pruned
    dense = _net(16, "dense")
    before_weights = [w.copy() for w in dense.get_weights()]
    sparse = magnitude_pruned(dense, 0.5)
    for before, after in zip(before_weights, dense.get_weights()):   # dense untouched
        np.testing.assert_array_equal(before, after)
    assert [w.shape for w in sparse.weights] == [w.shape for w in dense.weights]
    for before, after in zip(dense.layers, sparse.layers):
        if isinstance(before, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel, pruned = before.kernel.numpy(), after.kernel.numpy()
            assert np.mean(pruned == 0) == pytest.approx(0.5, abs=0.01)
            kept = pruned != 0
            np.testing.assert_array_equal(pruned[kept], kernel[kept])
            assert np.abs(kernel[~kept]).max() <= np.abs(kernel[kept]).min()
    assert eb_tf.count_flops(sparse).total == eb_tf.count_flops(dense).total
    with pytest.raises(ValueError, match=r"sparsity=1.0 must be in \(0, 1\)"):
        magnitude_pruned(dense, 1.0)
