"""Tests of eb_tf/litert.py: the LiteRT runner, int8 I/O, accuracy, latency."""
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras, tf
from eb_tf.export import litert


def _argmax_model(features=4):
    """Dense with the identity kernel: its argmax is the argmax of the input."""
    inp = keras.Input((features,))
    out = keras.layers.Dense(features, kernel_initializer="identity",
                             bias_initializer="zeros")(inp)
    return keras.Model(inp, out, name="identity")


def _two_input_model():
    a, b = keras.Input((6, 6, 2)), keras.Input((3,))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(a))
    x = keras.layers.Concatenate()([x, keras.layers.Dense(4)(b)])
    return keras.Model([a, b], keras.layers.Dense(5)(x), name="two_inputs")


@pytest.fixture(scope="module")
def identity_f32():
    return eb_tf.convert_tflite(_argmax_model())


def test_runner_resizes_batches_and_matches_keras(tmp_path):
    model = _two_input_model()
    info = eb_tf.export_tflite(model, str(tmp_path / "two.tflite"))
    rng = np.random.default_rng(0)
    for source in (info, info.path, open(info.path, "rb").read()):
        runner = eb_tf.LiteRTModel(source)
        assert runner.size_bytes == info.size_bytes
        for batch in (1, 5, 3):
            a = rng.normal(size=(batch, 6, 6, 2)).astype(np.float32)
            b = rng.normal(size=(batch, 3)).astype(np.float32)
            np.testing.assert_allclose(runner(a, b), model([a, b]).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match=r"has 2 input\(s\); got 1 array"):
        runner(a)


def test_accuracy_is_exact_for_keras_and_tflite_with_int_or_one_hot_labels(identity_f32):
    x = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1, 2, 3]] * 3.0
    y = np.array([0, 1, 2, 3, 1, 1, 2, 0])                     # 6 of 8 right
    batches = tf.data.Dataset.from_tensor_slices((x, np.eye(4)[y])).batch(3)
    for model in (_argmax_model(), identity_f32, eb_tf.LiteRTModel(identity_f32)):
        assert eb_tf.evaluate_accuracy(model, (x, y)) == 6 / 8
        assert eb_tf.evaluate_accuracy(model, (x, y), batch_size=3) == 6 / 8
        assert eb_tf.evaluate_accuracy(model, batches) == 6 / 8      # one-hot labels
        assert eb_tf.evaluate_accuracy(model, (x, y), max_samples=4) == 1.0
        assert eb_tf.evaluate_accuracy(model, batches, max_samples=5) == 4 / 5


def test_accuracy_rejects_bad_data(identity_f32):
    with pytest.raises(ValueError, match="holds no examples"):
        eb_tf.evaluate_accuracy(identity_f32, [])
    with pytest.raises(ValueError, match="data has 3 inputs but 2 labels"):
        eb_tf.evaluate_accuracy(identity_f32, (np.zeros((3, 4)), np.zeros(2)))
    with pytest.raises(ValueError, match="yield \\(x, y\\) batches; got an element of type"):
        eb_tf.evaluate_accuracy(identity_f32, [np.zeros((3, 4))])
    with pytest.raises(ValueError, match="max_samples=0 must be an int >= 1"):
        eb_tf.evaluate_accuracy(identity_f32, (np.zeros((3, 4)), np.zeros(3)), max_samples=0)


def test_int8_runner_quantizes_inputs_and_dequantizes_outputs():
    model = _argmax_model()
    x = np.random.default_rng(0).uniform(-2, 2, size=(64, 4)).astype(np.float32)
    runner = eb_tf.LiteRTModel(eb_tf.convert_tflite(model, "int8", x))
    detail = runner.input_details[0]
    assert np.dtype(detail["dtype"]) == np.int8 and detail["quantization"][0] > 0
    out = runner(x[:10])
    assert out.dtype == np.float32
    out_scale = runner.output_details[0]["quantization"][0]
    # identity net: the output is the input, up to one input and one output step
    np.testing.assert_allclose(out, x[:10], atol=detail["quantization"][0] + out_scale)


@hypothesis.given(
    scale=st.floats(1e-3, 1.0), zero_point=st.integers(-128, 127),
    x=hnp.arrays(np.float32, st.integers(1, 20), elements=st.floats(-1, 1, width=32)))
def test_quantize_then_dequantize_is_within_half_a_step(scale, zero_point, x):
    detail = {"dtype": np.int8, "quantization": (scale, zero_point), "name": "in"}
    x = x * 100 * scale                                 # about +-100 steps
    q = litert.quantize_input(x, detail)
    assert q.dtype == np.int8
    back = litert.dequantize_output(q, detail)
    lo, hi = (-128 - zero_point) * scale, (127 - zero_point) * scale
    inside = (x >= lo) & (x <= hi)
    assert np.all(np.abs(back - x)[inside] <= scale / 2 * (1 + 1e-4))
    np.testing.assert_allclose(back[~inside], np.where(x[~inside] < lo, lo, hi), rtol=1e-6)


def test_unquantized_integer_input_is_refused():
    detail = {"dtype": np.int8, "quantization": (0.0, 0), "name": "ids"}
    with pytest.raises(ValueError, match="input 'ids' is int8 without a quantisation scale"):
        litert.quantize_input(np.zeros(3, np.float32), detail)


def test_latency_stats_are_ordered_and_validated(identity_f32):
    stats = eb_tf.measure_latency(identity_f32, num_threads=2, num_runs=30, warmup=2)
    assert stats.num_runs == 30 and stats.num_threads == 2
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms
    assert stats.min_ms <= stats.mean_ms
    for kwargs, message in (({"num_threads": 0}, "num_threads=0 must be an int >= 1"),
                            ({"num_runs": 0}, "num_runs=0 must be an int >= 1"),
                            ({"warmup": -1}, "warmup=-1 must be an int >= 0")):
        with pytest.raises(ValueError, match=message):
            eb_tf.measure_latency(identity_f32, **kwargs)


def test_bad_sources_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no .tflite file at"):
        eb_tf.LiteRTModel(str(tmp_path / "missing.tflite"))
    with pytest.raises(ValueError, match="expected a .tflite path, flatbuffer bytes or an "
                                         "ExportInfo; got int"):
        eb_tf.LiteRTModel(3)
    with pytest.raises(ValueError, match="num_threads=0 must be an int >= 1 or None"):
        eb_tf.LiteRTModel(b"", num_threads=0)
