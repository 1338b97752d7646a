"""Tests of eb_tf.pruning.flops: hand-computed MACs, TF's own op statistics, tfmot wrappers."""
import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

import eb_tf
from eb_tf.compat import keras, tf
from eb_tf.pruning import flops

L = keras.layers
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
VGG16_CONV_MACS = 313_196_544        # 13 conv3x3 layers at 32x32 input: the paper's 313M


def _one_layer(layer, input_shape):
    x = keras.Input(input_shape)
    return keras.Model(x, layer(x))


def _slimming_vgg16(num_classes=10):
    x = inp = keras.Input((32, 32, 3))
    for v in VGG16_CFG:
        if v == "M":
            x = L.MaxPooling2D()(x)
        else:
            x = L.Conv2D(v, 3, padding="same", use_bias=False)(x)
            x = L.ReLU()(L.BatchNormalization()(x))
    x = L.Dense(num_classes)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, x, name="vgg16")


def _small_cnn(name="small"):
    x = inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.Conv2D(6, 3, strides=2, padding="same")(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, x, name=name)


@pytest.mark.parametrize("layer, input_shape, macs", [
    # out 5x5x6 (stride 2, same): 25 positions * 3*3*4 * 6
    (L.Conv2D(6, 3, strides=2, padding="same"), (9, 9, 4), 25 * 3 * 3 * 4 * 6),
    # out 4x4x6 (stride 2, valid)
    (L.Conv2D(6, 3, strides=2, padding="valid"), (9, 9, 4), 16 * 3 * 3 * 4 * 6),
    # groups=2: each output channel sees 4/2 input channels; out 6x6
    (L.Conv2D(6, 3, groups=2), (8, 8, 4), 36 * 3 * 3 * 2 * 6),
    # channels_first: out (6, 7, 7)
    (L.Conv2D(6, 3, data_format="channels_first"), (4, 9, 9), 49 * 3 * 3 * 4 * 6),
    # Conv1D: out 8 positions x 4
    (L.Conv1D(4, 3), (10, 2), 8 * 3 * 2 * 4),
    (L.Conv1D(4, 3, strides=2, padding="same", groups=2), (10, 2), 5 * 3 * 1 * 4),
    # Conv3D: out 3x3x3x3
    (L.Conv3D(3, 2), (4, 4, 4, 2), 27 * 2 * 2 * 2 * 2 * 3),
    # transpose: every one of the 4x4 input positions scatters a 3x3x2 -> 3 kernel
    (L.Conv2DTranspose(3, 3, strides=2, padding="same"), (4, 4, 2), 16 * 3 * 3 * 2 * 3),
    # 'valid' transpose: 3x3 input -> 4x4 output, yet only 9 * 2*2 multiplies happen
    (L.Conv2DTranspose(1, 2), (3, 3, 1), 9 * 2 * 2),
    (L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (8, 8, 3), 64 * 3 * 3 * 3 * 2),
    (L.DepthwiseConv2D(3, strides=2), (9, 9, 3), 16 * 3 * 3 * 3),
    # depthwise 6x6 * 3x3 * 3 * 2, then pointwise 6x6 * 6 * 5
    (L.SeparableConv2D(5, 3, depth_multiplier=2), (8, 8, 3), 36 * 9 * 6 + 36 * 6 * 5),
    (L.Dense(5), (7,), 7 * 5),
    (L.Dense(5), (4, 7), 4 * 7 * 5),                 # 3-D input: 4 positions
    (L.Dense(5), (2, 3, 7), 6 * 7 * 5),
])
def test_count_flops_matches_hand_computed_macs(layer, input_shape, macs):
    report = eb_tf.count_flops(_one_layer(layer, input_shape))
    assert report.total == macs
    assert report.per_layer == {layer.name: macs}


def test_other_ops_are_elementwise_counts_outside_the_total():
    x = keras.Input((8, 8, 6))
    a = L.BatchNormalization(name="bn")(x)                       # 384 elements
    b = L.ReLU(name="relu")(a)                                   # 384
    c = L.Add(name="add")([a, b, x])                             # 2 adds per element
    d = L.MaxPooling2D(2, name="pool")(c)                        # 96 outputs * 4 taps
    e = L.Flatten(name="flat")(L.Dropout(0.5, name="drop")(d))  # free
    f = L.Dense(3, activation="relu", name="fc")(e)              # bias + relu: 2 * 3
    g = L.GlobalAveragePooling2D(name="gap")(d)                  # reads 96
    model = keras.Model(x, [f, g])
    report = eb_tf.count_flops(model)
    assert report.per_layer == {"fc": 96 * 3}
    assert report.total == 288
    assert report.other == {"bn": 384, "relu": 384, "add": 768, "pool": 384, "fc": 6, "gap": 96}
    assert report.other_total == 2022


def _tf_op_macs(model):
    """MACs from TensorFlow's own per-op FLOP statistics (2 FLOPs per MAC)."""
    ops = pytest.importorskip("tensorflow.python.framework.ops")
    fn = tf.function(lambda x: model(x, training=False))
    spec = tf.TensorSpec((1,) + tuple(model.input_shape[1:]), tf.float32)
    graph = fn.get_concrete_function(spec).graph
    total = 0
    for op in graph.get_operations():
        if op.type in ("Conv2D", "DepthwiseConv2dNative", "MatMul", "Conv2DBackpropInput"):
            total += int(ops.get_stats_for_node_def(graph, op.node_def, "flops").value)
    return total // 2


@hypothesis.given(
    kind=st.sampled_from(["conv", "depthwise", "separable", "transpose", "dense", "conv1d"]),
    size=st.integers(3, 9), cin=st.integers(1, 5), cout=st.integers(1, 6),
    kernel=st.integers(1, 3), stride=st.integers(1, 2), padding=st.sampled_from(["same", "valid"]))
@hypothesis.settings(max_examples=15)
def test_count_flops_equals_tensorflow_op_statistics(kind, size, cin, cout, kernel, stride,
                                                     padding):
    keras.backend.clear_session()
    shape = (size, cin) if kind == "conv1d" else (size, size, cin)
    layer = {
        "conv": lambda: L.Conv2D(cout, kernel, stride, padding),
        "conv1d": lambda: L.Conv1D(cout, kernel, stride, padding),
        "depthwise": lambda: L.DepthwiseConv2D(kernel, stride, padding, depth_multiplier=cout),
        "separable": lambda: L.SeparableConv2D(cout, kernel, stride, padding),
        # TF's statistic (output positions * kernel / stride^2) equals the real multiply
        # count (input positions * kernel) only when output = input * stride ('same')
        "transpose": lambda: L.Conv2DTranspose(cout, kernel, stride, "same"),
        "dense": lambda: L.Dense(cout),
    }[kind]()
    model = _one_layer(layer, shape)
    assert eb_tf.count_flops(model).total == _tf_op_macs(model) > 0


def test_vgg16_cifar_is_313m_macs_to_the_mac():
    report = eb_tf.count_flops(_slimming_vgg16())
    conv = {k: v for k, v in report.per_layer.items() if k.startswith("conv2d")}
    assert len(conv) == 13 and sum(conv.values()) == VGG16_CONV_MACS
    assert report.per_layer["dense"] == 512 * 10
    assert report.total == VGG16_CONV_MACS + 5120 == 313_201_664


def test_zoo_vgg16_convs_are_313m_macs():
    model = eb_tf.models.build("vgg16", 10, (32, 32, 3))
    convs = {layer.name for layer in model.layers if isinstance(layer, L.Conv2D)}
    report = eb_tf.count_flops(model)
    assert sum(report.per_layer[name] for name in convs) == VGG16_CONV_MACS


def test_count_params_equals_keras_count_params_for_plain_models():
    for model in (_small_cnn(), _slimming_vgg16()):
        report = eb_tf.count_params(model)
        assert report.total == model.count_params()
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert report.trainable == trainable
        assert report.non_trainable == report.total - trainable > 0   # BN moving stats
    small = eb_tf.count_params(_small_cnn())
    # conv 3*3*3*4, bn 4*4 (gamma, beta, mean, var), conv 3*3*4*6 + 6, bn 6*4, dense 6*2 + 2
    assert list(small.per_layer.values()) == [108, 16, 222, 24, 14]
    assert small.total == 384 and small.trainable == 384 - 8 - 12


def test_count_params_splits_frozen_layers_into_non_trainable():
    model = _small_cnn()
    model.layers[1].trainable = False              # the first conv
    report = eb_tf.count_params(model)
    assert report.total == 384 and report.trainable == 384 - 20 - 108


def test_tfmot_quantized_and_pruning_wrapped_models_count_as_float_model():
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    model = _small_cnn()
    flops_ref, params_ref = eb_tf.count_flops(model), eb_tf.count_params(model)
    quantized = tfmot.quantization.keras.quantize_model(model)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    for wrapped in (quantized, pruned):
        assert wrapped.count_params() > model.count_params()    # wrapper state exists
        assert eb_tf.count_flops(wrapped) == flops_ref
        assert eb_tf.count_params(wrapped) == params_ref
    quantized(np.zeros((1, 8, 8, 3), np.float32))              # kernels leave the inner layer
    assert eb_tf.count_params(quantized) == params_ref


def test_nested_model_keys_and_repeated_calls():
    inner = _small_cnn(name="inner")
    x = keras.Input((8, 8, 3))
    head = L.Dense(4, name="head")
    y = L.Add(name="sum")([head(inner(x)), head(inner(L.Conv2D(3, 1, name="mix")(x)))])
    model = keras.Model(x, y)
    report, alone = eb_tf.count_flops(model), eb_tf.count_flops(inner)
    # the nested model runs twice, the shared Dense head twice
    assert report.per_layer["inner/conv2d"] == 2 * alone.per_layer["conv2d"] == 2 * 64 * 27 * 4
    assert report.per_layer["head"] == 2 * 2 * 4
    assert report.total == 2 * alone.total + 2 * 8 + 64 * 9
    params = eb_tf.count_params(model)
    assert params.total == model.count_params() == 384 + 12 + 12      # shared weights once
    assert params.per_layer["inner/batch_normalization"] == 16


def test_sequential_models_and_nested_sequential():
    seq = keras.Sequential([keras.Input((6,)), L.Dense(4), L.Dense(3)])
    assert eb_tf.count_flops(seq).total == 6 * 4 + 4 * 3
    built = keras.Sequential([L.Dense(4), L.Dense(3)])
    built.build((None, 6))
    assert eb_tf.count_flops(built).total == 36
    x = keras.Input((5, 6))
    deferred = keras.Sequential([L.Dense(4, name="d1")], name="block")
    model = keras.Model(x, deferred(x))
    assert eb_tf.count_flops(model).per_layer == {"block/d1": 5 * 6 * 4}


def test_unknown_spatial_dims_raise_with_the_fix():
    model = _one_layer(L.Conv2D(4, 3), (None, None, 3))
    with pytest.raises(ValueError, match=r"layer 'conv2d'.*\(None, None, None, 3\).*fixed "
                                         r"input shape"):
        eb_tf.count_flops(model)


def test_models_without_a_graph_raise():
    with pytest.raises(ValueError, match="no static layer graph; call it on keras.Input"):
        eb_tf.count_flops(keras.Sequential([L.Dense(2)]))

    class Sub(keras.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.fc = L.Dense(2)

        def call(self, x):
            return self.fc(x)

    sub = Sub()
    sub(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="'sub' \\(Sub\\) has no static layer graph"):
        eb_tf.count_flops(sub)
    assert eb_tf.count_params(sub).total == 8
    with pytest.raises(ValueError, match="is not built"):
        eb_tf.count_params(keras.Sequential([L.Dense(2)]))
    with pytest.raises(ValueError, match="eb_tf.count_flops expects a Keras model"):
        eb_tf.count_flops("vgg16")


def test_weight_layer_of_unknown_cost_raises_naming_it():
    model = _one_layer(L.LSTM(3, name="rnn"), (5, 2))
    model.trainable = False                      # frozen weights still hide MACs
    with pytest.raises(ValueError, match="layer 'rnn' \\(LSTM\\) has weights but no known MAC"):
        eb_tf.count_flops(model)


def test_reports_are_frozen_and_print_tables():
    report = eb_tf.count_flops(_small_cnn())
    with pytest.raises(AttributeError):
        report.total = 0
    text = str(report)
    assert "conv2d_1" in text and f"{report.total:,}" in text and "other ops" in text
    assert report.per_layer == {"conv2d": 64 * 27 * 4, "conv2d_1": 16 * 36 * 6, "dense": 12}
    params_text = eb_tf.count_params(_small_cnn()).table()
    assert "384" in params_text and "non-trainable 20" in params_text
