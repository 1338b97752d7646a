"""ChannelSelect: the gather layer behind narrowed edges of a pruned model."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eb_tf.compat import keras, tf
from eb_tf.pruning.channel_select import ChannelSelect


def test_select_gathers_last_axis_in_index_order():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    y = ChannelSelect([3, 0, 0])(x).numpy()
    np.testing.assert_array_equal(y, x[..., [3, 0, 0]])
    assert y.shape == (2, 3, 3)


@given(channels=st.integers(1, 9), data=st.data())
def test_select_matches_numpy_take(channels, data):
    indices = data.draw(st.lists(st.integers(0, channels - 1), min_size=1, max_size=12))
    x = np.random.default_rng(channels).normal(size=(2, 5, channels)).astype(np.float32)
    np.testing.assert_array_equal(ChannelSelect(indices)(x).numpy(), np.take(x, indices, -1))


def test_select_symbolic_shape_and_output_shape():
    inp = keras.Input((6, 6, 8))
    out = ChannelSelect([1, 5, 7], name="pick")(inp)
    assert out.shape.as_list() == [None, 6, 6, 3]
    assert ChannelSelect([0, 1]).compute_output_shape((None, 4, 9)).as_list() == [None, 4, 2]


@pytest.mark.parametrize("indices, message", [
    ([], "non-empty"),
    ([[0, 1]], "non-empty 1-D"),
    ([0.5, 1.0], "must be integers"),
    ([2, -1], "must be >= 0, got -1"),
])
def test_select_rejects_bad_indices(indices, message):
    with pytest.raises(ValueError, match=message):
        ChannelSelect(indices)


def test_select_rejects_index_out_of_range_when_built():
    with pytest.raises(ValueError, match=r"index 4 is out of range .* 4 channels \(allowed 0..3\)"):
        ChannelSelect([0, 4])(keras.Input((3, 4)))


def test_select_config_round_trip_and_registered_name():
    layer = ChannelSelect([2, 0], name="sel")
    config = layer.get_config()
    assert config["indices"] == [2, 0] and config["name"] == "sel"
    again = ChannelSelect.from_config(config)
    assert again.indices == [2, 0]
    assert keras.utils.get_registered_name(ChannelSelect) == "eb_tf>ChannelSelect"
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, ChannelSelect) and restored.indices == [2, 0]


def test_select_model_saves_and_loads_keras_format(tmp_path):
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(ChannelSelect([2, 0])(inp)))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=0, atol=1e-6)
    assert isinstance(loaded.layers[1], ChannelSelect)


def test_select_converts_to_tflite_gather():
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
    inp = keras.Input((4, 4, 5))
    model = keras.Model(inp, ChannelSelect([4, 0, 2])(inp))
    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = Interpreter(model_content=blob)
    interpreter.allocate_tensors()
    assert "GATHER" in [d["op_name"] for d in interpreter._get_ops_details()]  # pylint: disable=protected-access
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 5)).astype(np.float32)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_array_equal(out, x[..., [4, 0, 2]])
