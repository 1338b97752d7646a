"""Tests of eb_tf.summary: the kept/total channel table of a mask."""
import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras

L = keras.layers


def _net(name="net", prefix=""):
    x = inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name=prefix + "c1")(x)
    x = L.ReLU()(L.BatchNormalization(name=prefix + "bn1")(x))
    x = L.Conv2D(8, 3, name=prefix + "c2")(x)
    x = L.BatchNormalization(name=prefix + "bn2")(x)
    y = L.BatchNormalization(name=prefix + "bn_in", scale=False)(inp)     # not a candidate
    out = L.Concatenate()([L.GlobalAveragePooling2D()(x), L.GlobalAveragePooling2D()(y)])
    return keras.Model(inp, out, name=name)


MASKS = {"bn1": np.array([True, False, True, True]),
         "bn2": np.array([1, 0, 0, 0, 0, 1, 1, 0])}                         # 0/1 ints work


def test_summary_rows_totals_and_printed_table():
    printed = []
    report = eb_tf.summary(_net(), MASKS, print_fn=printed.append)
    assert [(r.key, r.producer, r.kept, r.total) for r in report.rows] == [
        ("bn1", "c1", 3, 4), ("bn2", "c2", 3, 8)]
    assert report.rows[0].fraction == 0.75
    assert (report.kept, report.total, report.fraction) == (6, 12, 0.5)
    assert report.as_dicts()[1] == {"key": "bn2", "producer": "c2", "kept": 3, "total": 8,
                                    "frozen_by": "", "fraction": 0.375}
    assert len(printed) == 1 and printed[0] == str(report)
    lines = printed[0].splitlines()
    assert lines[1].split() == ["bn1", "c1", "3", "4", "75.0%"]
    assert lines[-1].split() == ["total", "6", "12", "50.0%"]


def test_missing_keys_and_no_masks_count_as_fully_kept():
    model = _net()
    partial = eb_tf.summary(model, {"bn2": MASKS["bn2"]}, print_fn=None)
    assert [(r.kept, r.total) for r in partial.rows] == [(4, 4), (3, 8)]
    assert eb_tf.summary(model, None, print_fn=None).fraction == 1.0


def test_nested_model_keys_and_producers():
    inner = _net(name="inner")
    x = keras.Input((6, 6, 3))
    model = keras.Model(x, L.Dense(2)(inner(x)))
    masks = {"inner/bn1": MASKS["bn1"], "inner/bn2": MASKS["bn2"]}
    report = eb_tf.summary(model, masks, print_fn=None)
    assert [(r.key, r.producer, r.kept) for r in report.rows] == [
        ("inner/bn1", "inner/c1", 3), ("inner/bn2", "inner/c2", 3)]


def test_tfmot_quantized_model_has_the_same_summary():
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    x = keras.Input((6, 6, 3))
    h = L.BatchNormalization(name="bn1")(L.Conv2D(4, 3, name="c1")(x))
    model = keras.Model(x, L.Dense(2)(L.Flatten()(L.ReLU()(h))))
    quantized = tfmot.quantization.keras.quantize_model(model)
    mask = {"bn1": MASKS["bn1"]}
    float_rows = eb_tf.summary(model, mask, print_fn=None).rows
    assert eb_tf.summary(quantized, mask, print_fn=None).rows == float_rows
    assert float_rows[0].producer == "c1"


def test_summary_of_channel_masks_keeps_the_unpruned_fraction():
    model = _net()
    report = eb_tf.summary(model, eb_tf.channel_masks(model, 0.25), print_fn=None)
    assert (report.kept, report.total) == (9, 12)            # floor(0.25 * 12) = 3 pruned


def test_bad_masks_raise_naming_the_key():
    model = _net()
    with pytest.raises(ValueError, match=r"keys \['bn3'\] that are no candidate BN layer.*"
                                         r"valid keys: \['bn1', 'bn2'\]"):
        eb_tf.summary(model, {"bn3": np.ones(4, bool)}, print_fn=None)
    with pytest.raises(ValueError, match=r"'bn_in'"):          # scale=False: no candidate
        eb_tf.summary(model, {"bn_in": np.ones(3, bool)}, print_fn=None)
    with pytest.raises(ValueError, match=r"masks\['bn1'\] has shape \(5,\), but BN layer 'bn1' "
                                         r"has 4 channels; expected shape \(4,\)"):
        eb_tf.summary(model, {"bn1": np.ones(5, bool)}, print_fn=None)
    with pytest.raises(ValueError, match=r"masks\['bn1'\] must be boolean"):
        eb_tf.summary(model, {"bn1": np.array([0.5, 1, 1, 1])}, print_fn=None)
    with pytest.raises(ValueError, match="eb_tf.summary expects a Keras model"):
        eb_tf.summary(None, MASKS)
