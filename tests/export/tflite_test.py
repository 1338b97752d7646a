"""Tests of eb_tf/export/tflite.py: TFLite conversion modes, fidelity, accuracy, bad input."""
import os

import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras, tf
from eb_tf.export import tflite as export
from eb_tf.export.litert import LiteRTModel, evaluate_accuracy


def _conv_net(input_shape=(8, 8, 1), classes=10, width=8, name="net"):
    # BN momentum 0.9: ~300 training steps must wash the initial moving variance out.
    inp = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(2 * width, 3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(classes)(x), name=name)


def _randomise_bn(model, seed=0):
    """Non-trivial BN statistics and affine parameters, so BN folding is exercised."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.2, 1.5, n), rng.normal(0, 0.3, n),
                               rng.normal(0, 0.3, n), rng.uniform(0.5, 2.0, n)])


def _max_diff(model, flatbuffer_or_path, x):
    return float(np.max(np.abs(LiteRTModel(flatbuffer_or_path)(x)
                               - model(x, training=False).numpy())))


def test_float32_export_matches_keras_on_random_inputs(tmp_path):
    model = _conv_net(input_shape=(12, 12, 3))
    _randomise_bn(model)
    x = np.random.default_rng(1).normal(size=(16, 12, 12, 3)).astype(np.float32)
    info = eb_tf.export_tflite(model, str(tmp_path / "m.tflite"))
    assert info.mode == "float32" and info.calibration == "none"
    assert info.input_dtypes == ("float32",) and info.output_dtypes == ("float32",)
    assert info.size_bytes == os.path.getsize(info.path) > 0
    assert _max_diff(model, info, x) <= 1e-4


def _preact_residual_net():
    """A pre-activation residual block: the pruned ticket gathers kept channels."""
    inp = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(stem)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv2")(x)
    x = keras.layers.Add()([stem, x])
    x = keras.layers.BatchNormalization(name="bn3")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(4)(x), name="preact")


def _pruner_api():
    return eb_tf.prune, eb_tf.ChannelSelect


def test_float32_export_matches_pruned_ticket_with_channel_select(tmp_path):
    prune, channel_select = _pruner_api()
    model = _preact_residual_net()
    _randomise_bn(model, seed=3)
    ticket = prune(model, eb_tf.channel_masks(model, 0.5))
    assert any(isinstance(layer, channel_select) for layer in ticket.layers)
    x = np.random.default_rng(2).normal(size=(8, 8, 8, 3)).astype(np.float32)
    info = eb_tf.export_tflite(ticket, str(tmp_path / "ticket.tflite"))
    assert _max_diff(ticket, info, x) <= 1e-4


def test_float16_export_halves_weights_and_stays_close(tmp_path):
    model = _conv_net(width=32)
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype(np.float32)
    f32 = eb_tf.export_tflite(model, str(tmp_path / "f32.tflite"))
    f16 = eb_tf.export_tflite(model, str(tmp_path / "f16.tflite"), mode="float16")
    assert f16.input_dtypes == ("float32",) and f16.output_dtypes == ("float32",)
    assert f16.size_bytes < 0.6 * f32.size_bytes
    assert _max_diff(model, f16, x) <= 1e-2


# ------------------------------------------------------------------ trained model accuracy

@pytest.fixture(scope="module")
def digits():
    """A tiny conv net trained on scikit-learn's 8x8 digits (1297 train / 500 test)."""
    from sklearn.datasets import load_digits
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    keras.utils.set_random_seed(0)
    model = _conv_net(width=16, name="digits_net")
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:-500], y[:-500], batch_size=64, epochs=15, verbose=0)
    return model, x[:-500], (x[-500:], y[-500:])


@pytest.mark.parametrize("mode, dtype", [("dynamic", "float32"), ("int8", "int8")])
def test_quantized_export_loses_at_most_one_point(digits, tmp_path, mode, dtype):
    model, x_train, test = digits
    keras_acc = evaluate_accuracy(model, test)
    assert keras_acc >= 0.90
    info = eb_tf.export_tflite(model, str(tmp_path / f"{mode}.tflite"), mode=mode,
                               representative_data=[[x] for x in np.split(x_train[:200], 4)])
    assert info.input_dtypes == (dtype,) and info.output_dtypes == (dtype,)
    assert info.calibration == ("representative" if mode == "int8" else "none")
    assert info.calibration_samples == (200 if mode == "int8" else 0)
    assert len(test[1]) >= 300
    assert evaluate_accuracy(info, test) >= keras_acc - 0.01


def test_calibration_data_forms_give_the_same_samples():
    model = _conv_net()
    x = np.random.default_rng(0).uniform(size=(40, 8, 8, 1))        # float64: cast
    forms = {
        "array": x,
        "[x] batches": [[b] for b in np.split(x, 5)],
        "callable of a generator": lambda: ([b] for b in np.split(x, 4)),
        "(x, y) tf.data batches": tf.data.Dataset.from_tensor_slices(
            (x, np.zeros(40))).batch(16),
        "single examples": list(x),
    }
    for name, data in forms.items():
        samples = export._calibration_samples(model, data, 1000)  # pylint: disable=protected-access
        assert len(samples) == 40, name
        assert all(len(s) == 1 and s[0].shape == (1, 8, 8, 1) and s[0].dtype == np.float32
                   for s in samples), name
        np.testing.assert_allclose(np.concatenate([s[0] for s in samples]), x, rtol=1e-6,
                                   err_msg=name)
    assert len(export._calibration_samples(model, x, 7)) == 7  # pylint: disable=protected-access


def test_int8_conversion_is_deterministic_in_the_calibration_samples(digits):
    model, x_train, _ = digits
    x = x_train[:40]
    from_array = eb_tf.convert_tflite(model, "int8", x)
    assert from_array == eb_tf.convert_tflite(model, "int8", x_train,
                                              max_calibration_samples=40)
    assert from_array != eb_tf.convert_tflite(model, "int8", x_train[40:80])


def test_int8_from_qat_model_needs_no_representative_data(tmp_path):
    import tensorflow_model_optimization as tfmot
    qat = tfmot.quantization.keras.quantize_model(_conv_net())
    assert eb_tf.is_qat_model(qat) and not eb_tf.is_qat_model(_conv_net(name="plain"))
    info = eb_tf.export_tflite(qat, str(tmp_path / "qat.tflite"), mode="int8")
    assert info.calibration == "qat" and info.calibration_samples == 0
    assert info.input_dtypes == ("int8",) and info.output_dtypes == ("int8",)
    x = np.random.default_rng(0).uniform(0, 1, size=(3, 8, 8, 1)).astype(np.float32)
    assert LiteRTModel(info)(x).shape == (3, 10)


def test_pruning_wrappers_are_stripped_before_conversion():
    import tensorflow_model_optimization as tfmot
    plain = _conv_net(width=16)
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(plain)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
    flatbuffer = eb_tf.convert_tflite(wrapped)
    assert len(flatbuffer) < 1.1 * len(eb_tf.convert_tflite(plain))
    assert _max_diff(plain, flatbuffer, x) <= 1e-4


# ------------------------------------------------------------------ bad input, no partial file

def test_unknown_mode_lists_the_modes_and_writes_nothing(tmp_path):
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match=r"mode='int4'.*float32, float16, dynamic, int8"):
        eb_tf.export_tflite(_conv_net(), str(path), mode="int4")
    assert not path.exists()


def test_int8_without_representative_data_is_refused(tmp_path):
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match=r"mode='int8' needs representative_data.*'net'"):
        eb_tf.export_tflite(_conv_net(), str(path), mode="int8")
    assert not path.exists()


@pytest.mark.parametrize("data, message", [
    (np.zeros((4, 9, 9, 1), np.float32), r"shape \(4, 9, 9, 1\).*\(batch,\) \+ \(8, 8, 1\)"),
    ([], "representative_data is empty"),
    ([{"x": np.zeros((1, 8, 8, 1))}], "yields dicts"),
])
def test_bad_representative_data_is_refused(tmp_path, data, message):
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match=message):
        eb_tf.export_tflite(_conv_net(), str(path), mode="int8", representative_data=data)
    assert not path.exists()


def test_unwritable_or_bad_path_is_refused_before_converting(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(export, "_convert", lambda *a: pytest.fail("converted anyway"))
    with pytest.raises(ValueError, match=r"cannot be written: .*a_file' is not a writable"):
        eb_tf.export_tflite(_conv_net(), str(blocker / "sub" / "m.tflite"))
    with pytest.raises(ValueError, match=r"must be a file name ending in \.tflite"):
        eb_tf.export_tflite(_conv_net(), str(tmp_path / "m.onnx"))
    (tmp_path / "dir.tflite").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        eb_tf.export_tflite(_conv_net(), str(tmp_path / "dir.tflite"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "dir.tflite"]


def test_failed_conversion_keeps_the_old_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"previous export")

    class BrokenConverter:
        optimizations = ()

        def convert(self):
            raise RuntimeError("unsupported op FancyOp")
    monkeypatch.setattr(export.tf.lite.TFLiteConverter, "from_keras_model",
                        lambda model: BrokenConverter())
    with pytest.raises(ValueError, match=r"conversion of model 'net' to mode='float32' "
                                         r"failed: unsupported op FancyOp"):
        eb_tf.export_tflite(_conv_net(), str(path))
    assert path.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]


def test_non_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="eb_tf.export_tflite expects a Keras model"):
        eb_tf.export_tflite("model.keras", str(tmp_path / "m.tflite"))
