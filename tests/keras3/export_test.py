"""TFLite export and LiteRT evaluation of Keras 3 models: all four modes, gathers too."""
import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras3
from eb_tf.export.litert import LiteRTModel
from eb_tf.pruning import testing
from eb_tf.pruning.channel_select import Keras3ChannelSelect

L = keras3.layers


def _ticket():
    x = inp = keras3.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(x)
    for b in range(2):
        y = L.ReLU()(L.BatchNormalization(name=f"b{b}_bn1")(x))
        y = L.Conv2D(4, 3, padding="same", name=f"b{b}_conv1")(y)
        y = L.Conv2D(8, 1, name=f"b{b}_conv2")(L.ReLU()(L.BatchNormalization(name=f"b{b}_bn2")(y)))
        x = L.Add()([x, y * 0.5])                     # a keras.ops scale on the branch
    x = L.ReLU()(L.BatchNormalization(name="bn_final")(x))
    model = keras3.Model(inp, L.Dense(5)(L.GlobalAveragePooling2D()(x)))
    testing.randomize_bn(model, 0)
    masks = testing.random_masks(model, 0, keep=0.5, min_keep=1)
    return eb_tf.prune(model, masks)


@pytest.fixture(scope="module")
def ticket():
    return _ticket()


@pytest.mark.parametrize("mode, tol", [("float32", 1e-4), ("float16", 1e-2),
                                       ("dynamic", 5e-2), ("int8", 1.5e-1)])
def test_keras3_ticket_exports_in_every_mode_and_runs_in_litert(ticket, mode, tol, tmp_path):
    assert any(isinstance(l, Keras3ChannelSelect) for l in ticket.layers)
    x = np.random.default_rng(1).normal(size=(16, 8, 8, 3)).astype(np.float32)
    rep = x if mode == "int8" else None
    info = eb_tf.export_tflite(ticket, str(tmp_path / f"m_{mode}.tflite"), mode, rep)
    assert info.input_dtypes == (("int8",) if mode == "int8" else ("float32",))
    assert info.calibration == ("representative" if mode == "int8" else "none")
    want = np.asarray(ticket(x, training=False))
    got = LiteRTModel(info.path)(x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() / np.abs(want).max() <= tol, mode


def test_keras3_export_errors_are_one_line(tmp_path):
    ticket = _ticket()
    with pytest.raises(ValueError, match=r"^mode='int8' needs representative_data"):
        eb_tf.export_tflite(ticket, str(tmp_path / "m.tflite"), "int8")
    with pytest.raises(ValueError, match=r"representative_data batch for input 0 has shape "
                                         r"\(1, 4, 4, 3\)"):
        eb_tf.export_tflite(ticket, str(tmp_path / "m.tflite"), "int8",
                            np.zeros((1, 4, 4, 3), np.float32))
    assert not list(tmp_path.iterdir())


def test_keras3_channel_select_validates_and_round_trips_its_config():
    sel = Keras3ChannelSelect([2, 0], name="pick")
    np.testing.assert_array_equal(sel(np.array([[1.0, 2.0, 3.0]], np.float32)), [[3.0, 1.0]])
    assert Keras3ChannelSelect.from_config(sel.get_config()).indices == [2, 0]
    with pytest.raises(ValueError, match=r"`indices` must be >= 0, got -1"):
        Keras3ChannelSelect([0, -1])
    with pytest.raises(ValueError, match=r"index 5 is out of range for an input with 3 "
                                         r"channels \(allowed 0..2\)"):
        Keras3ChannelSelect([5])(keras3.Input((3,)))


def test_compare_models_takes_keras3_dense_and_ticket(ticket):
    dense_in = keras3.Input((8, 8, 3))
    dense = keras3.Model(dense_in, L.Dense(5)(L.GlobalAveragePooling2D()(
        L.Conv2D(16, 3, padding="same")(dense_in))))
    x = np.random.default_rng(2).normal(size=(8, 8, 8, 3)).astype(np.float32)
    y = np.arange(8) % 5
    table = eb_tf.compare_models({"dense": dense, "ticket": ticket}, modes=("float32",),
                                 data=(x, y), num_runs=3, warmup=1)
    rows = {row["model"]: row for row in table.rows}
    assert rows["dense"]["flops_ratio"] == 1.0
    assert rows["ticket"]["flops"] == eb_tf.count_flops(ticket).total
    assert rows["ticket"]["keras_acc"] == rows["ticket"]["tflite_acc"]
