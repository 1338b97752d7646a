"""handlers and dispatch: the registry, unmapped-layer reasons, weight slicing."""
import numpy as np
import pytest

from eb_tf.compat import keras, tf
from eb_tf.pruning import dispatch, graph
from eb_tf.pruning import handlers as layer_handlers

L = keras.layers


class Custom(L.Layer):
    def call(self, x):
        return x * 2.0


def _resolve_all(model):
    g = graph.build(model)
    return [dispatch.resolve(op, g, "eb_tf.prune") for op in g.ops]


@pytest.mark.parametrize("make, message", [
    (lambda x: L.Lambda(lambda t: t + 1.0, name="lam")(x),
     r"layer 'lam' \(Lambda\) is not supported by the pruner"),
    (lambda x: Custom(name="mine")(x), r"layer 'mine' \(Custom\) is not supported"),
    (lambda x: L.Reshape((4, 12), name="mix")(x),
     r"layer 'mix' \(Reshape\) mixes channels \(last axis 3 -> 12\)"),
    (lambda x: L.Conv2D(2, 1, data_format="channels_first", name="cf")(x),
     r"layer 'cf' \(Conv2D\) uses data_format='channels_first'"),
    (lambda x: L.Permute((3, 1, 2), name="perm")(x), r"'perm' \(Permute\) is not supported"),
    (lambda x: L.DepthwiseConv2D(1, depth_multiplier=2, name="dm")(x),
     r"'dm' \(DepthwiseConv2D\) has depth_multiplier=2; mapped: depth_multiplier=1"),
    (lambda x: L.BatchNormalization(axis=1, name="bn1")(x), r"'bn1' \(BatchNormalization\) "
     r"normalises axis \[1\]; mapped: the last axis \(3\)"),
    (lambda x: x[..., :2], r"applies tf.__operators__.getitem|'tf.__operators__.getitem' "
     r"\(SlicingOpLambda\) is not supported"),
    (lambda x: tf.transpose(x, (0, 3, 1, 2)), r"applies tf.*transpose, which is not an "
     r"elementwise function"),
])
def test_unmapped_layers_name_layer_class_and_reason(make, message):
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, make(inp))
    with pytest.raises(dispatch.UnmappedLayerError, match=message):
        _resolve_all(model)


def test_tf_op_with_a_constant_that_widens_the_channels_is_unmapped():
    inp = keras.Input((4, 4, 1))
    model = keras.Model(inp, inp * np.arange(3, dtype=np.float32))
    with pytest.raises(dispatch.UnmappedLayerError, match=r"constant of shape \(3,\), which "
                       r"mixes the 1 channels"):
        _resolve_all(model)


def test_unknown_layer_error_lists_supported_types():
    inp = keras.Input((4, 4, 3))
    with pytest.raises(ValueError, match=r"Supported: .*BatchNormalization.*Conv2D.*Dense"):
        _resolve_all(keras.Model(inp, Custom()(inp)))


def test_resolve_kinds_of_common_layers():
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(4, 3, name="c")(inp)
    y = L.Concatenate(axis=1)([x, x])                     # non-channel axis: a join
    z = L.Activation("softmax")(L.Concatenate()([x, x]))
    model = keras.Model(inp, [L.Flatten()(y), z])
    kinds = {op.layer.name: h.kind for op, h in zip(graph.build(model).ops, _resolve_all(model))}
    assert kinds["c"] == "producer"
    assert sorted(kinds.values()) == ["barrier", "concat", "flatten", "join", "producer"]


def test_register_adds_a_type_and_rejects_bad_kind():
    try:
        layer_handlers.register(Custom, layer_handlers.Handler("unary", const="eval"))
        inp = keras.Input((4, 4, 3))
        assert [h.kind for h in _resolve_all(keras.Model(inp, Custom()(inp)))] == ["unary"]
    finally:
        layer_handlers.REGISTRY.pop(Custom, None)
    with pytest.raises(ValueError, match="kind must be one of"):
        layer_handlers.register(Custom, layer_handlers.Handler("bogus"))


def _weights(layer):
    return {layer_handlers.weight_name(v): v.numpy() for v in layer.weights}


def test_slice_conv_in_and_out_with_fold_into_bias():
    conv = L.Conv2D(3, 1, use_bias=False)
    conv.build((None, 2, 2, 4))
    h = layer_handlers.REGISTRY[L.Conv2D]
    w = _weights(conv)
    fold = np.array([0.0, 0.5, 0.0, 0.0])
    out = layer_handlers.slice_weights(h, conv, w, np.array([0, 3]), np.array([2]), 4, fold)
    np.testing.assert_array_equal(out["kernel"], w["kernel"][:, :, [0, 3]][..., [2]])
    np.testing.assert_allclose(out["bias"], 0.5 * w["kernel"][0, 0, 1, [2]], rtol=1e-6)
    config = layer_handlers.new_config(h, conv, np.array([0, 3]), np.array([2]), fold_bias=True)
    assert config["filters"] == 1 and config["use_bias"] is True


def test_slice_dense_transpose_separable_depthwise_bn():
    cases = [
        (L.Dense(3), (None, 4), {"kernel": lambda k: k[[1, 2]][:, [0, 2]]}),
        (L.Conv2DTranspose(3, 2), (None, 2, 2, 4),
         {"kernel": lambda k: k[:, :, [0, 2]][..., [1, 2]]}),
        (L.SeparableConv2D(3, 1, depth_multiplier=2), (None, 2, 2, 4),
         {"depthwise_kernel": lambda k: k[:, :, [1, 2]],
          "pointwise_kernel": lambda k: k[:, :, [2, 3, 4, 5]][..., [0, 2]]}),
        (L.DepthwiseConv2D(3), (None, 4, 4, 4),
         {"depthwise_kernel": lambda k: k[:, :, [1, 2]], "bias": lambda b: b[[1, 2]]}),
        (L.BatchNormalization(), (None, 4), {"gamma": lambda g: g[[1, 2]],
                                             "moving_variance": lambda v: v[[1, 2]]}),
    ]
    for layer, shape, expect in cases:
        layer.build(shape)
        for v in layer.weights:
            v.assign(np.random.default_rng(0).normal(size=v.shape).astype(np.float32))
        h = layer_handlers.REGISTRY[type(layer)]
        w = _weights(layer)
        out = layer_handlers.slice_weights(h, layer, w, np.array([1, 2]), np.array([0, 2])
                                           if h.kind == "producer" else None, 4)
        for name, fn in expect.items():
            np.testing.assert_array_equal(out[name], fn(w[name]), err_msg=f"{layer.name}/{name}")


def test_reshape_config_follows_new_width():
    layer = L.Reshape((1, 1, 6))
    h = layer_handlers.REGISTRY[L.Reshape]
    assert layer_handlers.new_config(h, layer, np.arange(4), None)["target_shape"] == (1, 1, 4)
    assert tuple(layer_handlers.new_config(
        h, L.Reshape((1, -1)), np.arange(4), None)["target_shape"]) == (1, -1)
