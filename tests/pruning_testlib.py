"""Shared helpers of the pruner tests, for tf_keras and Keras 3 models alike."""
import numpy as np

import eb_tf
from eb_tf.compat import tf
from eb_tf.pruning import testing


def data(model, seed=0, n=4):
    """`n` random normal inputs of the model's input shape."""
    shape = (n,) + tuple(model.input_shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def assert_exact(reference, pruned, x):
    """Every output of `pruned` has the reference's shape and matches it to 1e-4."""
    ref, out = reference(x, training=False), pruned(x, training=False)
    for r, o in zip(tf.nest.flatten(ref), tf.nest.flatten(out)):
        assert r.shape == o.shape
        assert testing.max_rel_error(r, o) <= 1e-4


def mask_in_place(model, masks):
    """The masked reference without a clone (gamma = beta = 0), for big models."""
    refs = {r.key: r.layer for r in eb_tf.bn_layers(model)}
    for key, mask in masks.items():
        for var in (refs[key].gamma, refs[key].beta):
            var.assign(np.where(mask, var.numpy(), 0.0).astype(np.float32))
    return model


def preact_resnet(keras, blocks=2, width=8):
    """A pre-activation ResNet of `keras` (tf_keras or Keras 3): BN in front of every branch."""
    L = keras.layers
    x = inp = keras.Input((8, 8, 3))
    x = L.Conv2D(width, 3, padding="same", name="stem")(x)
    for b in range(blocks):
        y = L.ReLU()(L.BatchNormalization(name=f"b{b}_bn1")(x))
        y = L.Conv2D(width // 2, 3, padding="same", name=f"b{b}_conv1")(y)
        y = L.ReLU()(L.BatchNormalization(name=f"b{b}_bn2")(y))
        y = L.Conv2D(width, 3, padding="same", name=f"b{b}_conv2")(y)
        x = L.Add()([x, y])
    x = L.ReLU()(L.BatchNormalization(name="bn_final")(x))
    return keras.Model(inp, L.Dense(5)(L.GlobalAveragePooling2D()(x)), name="preact")


def nested_multi_io(keras):
    """(model, masks, x) of `keras`: a nested backbone, two named inputs, a conv shared by
    both branches, dict outputs {"cls", "map"}, and masks of the backbone's and the second
    branch's BN."""
    L, T, F = keras.layers, True, False
    bb_in = keras.Input((8, 8, 3))
    h = L.Conv2D(6, 3, padding="same", name="bb_c")(bb_in)
    backbone = keras.Model(bb_in, L.ReLU()(L.BatchNormalization(name="bb_bn")(h)), name="bb")
    shared = L.Conv2D(4, 1, name="shared")
    a, b = keras.Input((8, 8, 3), name="a"), keras.Input((8, 8, 6), name="b")
    fa = backbone(a)
    fb = L.ReLU()(L.BatchNormalization(name="b_bn")(L.Conv2D(6, 1, name="b_c")(b)))
    merged = L.Add()([shared(fa), shared(fb)])
    out1 = L.Dense(2, name="o1")(L.GlobalAveragePooling2D()(merged))
    out2 = L.Conv2D(3, 1, name="o2")(fa)
    model = keras.Model({"a": a, "b": b}, {"cls": out1, "map": out2})
    testing.randomize_bn(model, 6)
    masks = {"bb/bb_bn": np.array([T, F, T, F, F, F]), "b_bn": np.array([F, F, T, T, F, F])}
    x = {"a": data(backbone, 1, 2),
         "b": np.random.default_rng(2).normal(size=(2, 8, 8, 6)).astype(np.float32)}
    return model, masks, x
