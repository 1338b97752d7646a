"""prune / apply_masks / round_masks / summary / FLOPs on Keras 3 models.

The exactness tests of tests/pruning/pruner_test.py on the same random graphs, built in
Keras 3 (`testing.random_model(..., keras=keras3)`), plus what only Keras 3 has: its
`keras.ops` nodes (dispatched by class, not by their layer-like names), the
`Keras3ChannelSelect` gather, and `.keras` round trips of Keras 3 tickets.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eb_tf
from eb_tf.compat import keras, keras3, tf
from eb_tf.pruning import dispatch, pruner, testing
from eb_tf.pruning import plan as channel_plan
from eb_tf.pruning.channel_select import Keras3ChannelSelect
from tests.pruning_testlib import assert_exact as _assert_exact
from tests.pruning_testlib import data as _data
from tests.pruning_testlib import nested_multi_io, preact_resnet

L = keras3.layers
T, F = True, False
_DEAD = r"independent of its input \(a constant\): the signal dies at BN"


def _gathers(model):
    return [layer for layer in model.layers if isinstance(layer, Keras3ChannelSelect)]


@settings(max_examples=6)
@given(seed=st.integers(0, 2 ** 20), keep=st.sampled_from([0.2, 0.5, 0.8]),
       extended=st.booleans())
def test_prune_equals_masked_model_on_random_keras3_graphs(seed, keep, extended):
    keras3.backend.clear_session()
    model, _ = testing.random_model(seed, activation="relu", extended=extended, keras=keras3)
    testing.randomize_bn(model, seed)
    masks = testing.random_masks(model, seed, keep=keep)
    masked = pruner.apply_masks(model, masks)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruned = pruner.prune(model, masks)
    except ValueError as e:
        assert "independent of its input" in str(e), e
        assert not testing.output_varies(masked), "prune refused a model whose output varies"
        return
    assert type(pruned).__module__.startswith("keras.")
    _assert_exact(masked, pruned, _data(model, seed))
    assert pruned.count_params() <= model.count_params()


@settings(max_examples=6)
@given(seed=st.integers(0, 2 ** 20), dead=st.sampled_from([0.15, 0.3, 0.6]))
def test_prune_raises_exactly_when_keras3_masks_make_the_output_constant(seed, dead):
    keras3.backend.clear_session()
    model, _ = testing.random_model(seed, activation="leaky", keras=keras3)
    testing.randomize_bn(model, seed)
    masks = testing.random_masks(model, seed, keep=0.6, min_keep=1, dead=dead)
    masked = pruner.apply_masks(model, masks)
    if testing.output_varies(masked, seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruned = pruner.prune(model, masks)
        _assert_exact(masked, pruned, _data(model, seed))
    else:
        with pytest.raises(ValueError, match=_DEAD) as info:
            pruner.prune(model, masks)
        assert [k for k in masks if repr(k) in str(info.value)], info.value


@settings(max_examples=3)
@given(seed=st.integers(0, 2 ** 20))
def test_pruned_keras3_widths_equal_independent_live_counts(seed):
    keras3.backend.clear_session()
    model, spaces = testing.random_model(seed, activation="leaky", keras=keras3)
    testing.randomize_bn(model, seed)
    masks = testing.random_masks(model, seed, min_keep=1)
    x = _data(model, seed, n=8)
    masked = pruner.apply_masks(model, masks)
    testing.calibrate_bn(masked, x, seed)
    if not testing.output_varies(masked, seed):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruned = pruner.prune(masked, masks)
    _assert_exact(masked, pruned, x)
    for producers in spaces:
        live = int(testing.live_channels(masked, producers, x).sum())
        varies = testing.data_dependent(masked, producers, x)
        for name in producers:
            width = pruned.get_layer(name).kernel.shape[-1]
            assert width == max(1, live) if varies else width <= max(1, live), name


def test_same_random_graph_in_both_kerases_prunes_to_the_same_widths_and_flops():
    for seed in (3, 11):
        keras.backend.clear_session()
        keras3.backend.clear_session()
        k2, _ = testing.random_model(seed, extended=True)
        k3, _ = testing.random_model(seed, extended=True, keras=keras3)
        assert eb_tf.count_flops(k2).total == eb_tf.count_flops(k3).total
        assert eb_tf.count_flops(k2).other_total == eb_tf.count_flops(k3).other_total
        assert eb_tf.count_params(k2).total == eb_tf.count_params(k3).total == k3.count_params()
        testing.randomize_bn(k2, seed)
        testing.randomize_bn(k3, seed)
        m2 = testing.random_masks(k2, seed, min_keep=1)
        m3 = testing.random_masks(k3, seed, min_keep=1)
        assert [m.tolist() for m in m2.values()] == [m.tolist() for m in m3.values()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p2, p3 = pruner.prune(k2, m2), pruner.prune(k3, m3)
        assert channel_plan.analyze(k2, m2).producer_widths() == \
            channel_plan.analyze(k3, m3).producer_widths()
        assert eb_tf.count_flops(p2).total == eb_tf.count_flops(p3).total
        assert p2.count_params() == p3.count_params()


def _ops_model():
    inp = keras3.Input((6, 6, 3))
    x = L.BatchNormalization(name="bn1")(L.Conv2D(4, 3, padding="same", name="c1")(inp))
    x = L.ReLU()(x) * 2.0 + 1.0                               # ops Multiply, Add
    x = x * np.linspace(0.5, 2.0, 4).astype(np.float32)       # per-channel constant
    y = L.BatchNormalization(name="bn2")(L.Conv2D(4, 1, name="c2")(x))
    x = L.Add(name="join_add")([x, keras3.ops.relu(y)])
    x = L.Multiply(name="join_mul")([x, keras3.ops.sigmoid(x)])
    return keras3.Model(inp, L.Dense(2, name="fc")(L.GlobalAveragePooling2D()(x)))


def test_keras3_ops_are_dispatched_by_class_and_their_constants_sliced():
    model = _ops_model()
    plan = channel_plan.analyze(model, {})
    names = {type(op.layer).__module__ + "." + type(op.layer).__name__: op.layer.name
             for op in plan.graph.ops}
    # the ops' nodes are named like the Multiply and Add layers would be
    assert names["keras.src.ops.numpy.Multiply"].startswith("multiply")
    assert names["keras.src.ops.numpy.Add"].startswith("add")
    kinds = {type(op.layer).__module__.split(".")[-1] + "." + type(op.layer).__name__:
             (h.kind, dispatch.join_op(op.layer)) for op, h in zip(plan.graph.ops, plan.handlers)}
    assert kinds["numpy.Multiply"] == ("unary", "multiply")   # x * const: per channel
    assert kinds["numpy.Add"] == ("unary", "add")
    assert kinds["nn.Relu"][0] == kinds["nn.Sigmoid"][0] == "unary"
    assert kinds["add.Add"] == ("join", "add")                # the layers
    assert kinds["multiply.Multiply"] == ("join", "multiply")
    masks = {"bn1": np.array([T, F, T, T]), "bn2": np.array([T, T, T, T])}
    testing.randomize_bn(model, 1)
    pruned = pruner.prune(model, masks)
    _assert_exact(pruner.apply_masks(model, masks), pruned, _data(model, 1))
    # bn1's channel 1 is the constant (2 * 0 + 1) * 1.0 behind the ops: the 1x1 conv c2
    # folds it into its bias and reads 3 channels
    c2 = pruned.get_layer("c2")
    assert c2.kernel.shape == (1, 1, 3, 4) and c2.use_bias


def test_keras3_per_channel_constant_is_sliced_with_its_channels():
    inp = keras3.Input((6, 6, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn")(L.Conv2D(5, 3, padding="same", name="c")(inp)))
    x = x * np.arange(1.0, 6.0).astype(np.float32)
    model = keras3.Model(inp, L.Dense(2, name="fc")(L.GlobalAveragePooling2D()(x)))
    testing.randomize_bn(model, 2)
    masks = {"bn": np.array([T, F, T, F, T])}
    pruned = pruner.prune(model, masks)
    _assert_exact(pruner.apply_masks(model, masks), pruned, _data(model, 2))
    assert pruned.get_layer("c").filters == 3
    assert pruned.get_layer("fc").kernel.shape == (3, 2)


def test_unknown_keras3_op_is_a_barrier_named_in_the_warning():
    inp = keras3.Input((6, 6, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn")(L.Conv2D(4, 3, padding="same", name="c")(inp)))
    x = keras3.ops.flip(x, axis=-1)                    # mixes channel positions
    model = keras3.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    testing.randomize_bn(model, 3)
    masks = {"bn": np.array([T, F, T, F])}
    with pytest.warns(UserWarning, match=r"'flip' \(Flip\) applies keras.ops.flip, which is "
                      r"not an elementwise function the pruner knows, so it keeps the "
                      r"channels that masks 'bn' drop"):
        pruned = pruner.prune(model, masks)
    _assert_exact(pruner.apply_masks(model, masks), pruned, _data(model, 3))
    with pytest.raises(ValueError, match=r"^eb_tf.prune: layer 'flip' \(Flip\) applies "
                       r"keras.ops.flip, which is not an elementwise function"):
        pruner.prune(model, masks, unknown="error")


def test_prune_keras3_preact_resnet_gathers_saves_reloads_and_trains(tmp_path):
    model = preact_resnet(keras3)
    testing.randomize_bn(model, 2)
    masks = {k: np.array(m) for k, m in {
        "b0_bn1": [T, F, T, F, T, F, T, F], "b1_bn1": [F, F, F, F, T, T, T, T],
        "bn_final": [T, T, F, F, F, F, F, F], "b0_bn2": [T, F, T, T]}.items()}
    pruned = pruner.prune(model, masks)
    x = _data(model)
    _assert_exact(pruner.apply_masks(model, masks), pruned, x)
    assert pruned.get_layer("stem").filters == 8 - 1
    assert {g.name: g.indices for g in _gathers(pruned)} == {
        "b0_bn1_select": [0, 2, 3, 5], "b1_bn1_select": [3, 4, 5, 6],
        "bn_final_select": [0, 1]}                  # the same gathers as in tf_keras
    path = str(tmp_path / "ticket.keras")
    eb_tf.io_utils.atomic_save_model(pruned, path)
    loaded = keras3.models.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False), pruned(x, training=False), atol=1e-6)
    assert _gathers(loaded)
    loaded.compile(optimizer="sgd", loss="mse")
    assert np.isfinite(loaded.train_on_batch(x, np.zeros((4, 5), np.float32)))


def test_prune_keras3_sequential_nested_multi_io_and_shared_layer():
    seq = keras3.Sequential([keras3.Input((6, 6, 2)), L.Conv2D(4, 3, name="c"),
                             L.BatchNormalization(name="bn"), L.ReLU(), L.Flatten(),
                             L.Dense(3, name="d")], name="seq")
    testing.randomize_bn(seq, 5)
    pruned = pruner.prune(seq, {"bn": np.array([F, T, T, F])})
    assert not isinstance(pruned, keras3.Sequential) and pruned.name == "seq"
    _assert_exact(pruner.apply_masks(seq, {"bn": np.array([F, T, T, F])}), pruned, _data(seq))
    assert pruned.get_layer("d").kernel.shape == (16 * 2, 3)
    flops, pruned_flops = eb_tf.count_flops(seq), eb_tf.count_flops(pruned)
    assert flops.per_layer == {"c": 16 * 9 * 2 * 4, "d": 64 * 3}
    assert pruned_flops.per_layer == {"c": 16 * 9 * 2 * 2, "d": 32 * 3}
    assert eb_tf.count_params(seq).total == seq.count_params()

    model, masks, x = nested_multi_io(keras3)
    pruned = pruner.prune(model, masks)
    _assert_exact(pruner.apply_masks(model, masks), pruned, x)
    assert pruned.get_layer("shared").kernel.shape[2] == 3
    assert pruned.get_layer("bb").get_layer("bb_c").filters == 3
    assert [g.indices for g in _gathers(pruned)] == [[0, 1]]
    assert set(pruned(x, training=False)) == {"cls", "map"}


def test_round_masks_and_summary_on_a_keras3_model():
    model = preact_resnet(keras3, width=16)
    testing.randomize_bn(model, 7)
    masks = testing.random_masks(model, 7, keep=0.4, min_keep=1)
    rounded = eb_tf.pruning.rounding.round_masks(model, masks, multiple=4)
    assert all(r[m].all() for m, r in zip(masks.values(), rounded.values()))
    widths = channel_plan.analyze(model, rounded).producer_widths()
    assert all(kept % 4 == 0 or kept == total for kept, total in widths.values()), widths
    report = eb_tf.summary(model, masks, print_fn=None)
    assert report.kept == sum(int(m.sum()) for m in masks.values())
    assert [r.producer for r in report.rows][:2] == ["stem", "b0_conv1"]


def test_apply_masks_copies_a_keras3_model_and_zeroes_gamma_beta_only():
    model = preact_resnet(keras3)
    testing.randomize_bn(model, 10)
    mask = np.array([T, F] * 4)
    masked = pruner.apply_masks(model, {"b0_bn1": mask})
    assert type(masked).__module__.startswith("keras.") and masked is not model
    bn, orig = masked.get_layer("b0_bn1"), model.get_layer("b0_bn1")
    np.testing.assert_array_equal(bn.gamma.numpy(), np.where(mask, orig.gamma.numpy(), 0))
    np.testing.assert_array_equal(bn.beta.numpy(), np.where(mask, orig.beta.numpy(), 0))
    np.testing.assert_array_equal(bn.moving_mean.numpy(), orig.moving_mean.numpy())
    assert (orig.gamma.numpy() != 0).all()                     # original untouched


class _Subclassed(keras3.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.conv, self.bn = L.Conv2D(2, 1), L.BatchNormalization(name="bn")

    def call(self, x):
        return self.bn(self.conv(x))


def test_keras3_bad_input_gets_one_line_errors():
    sub = _Subclassed()
    sub(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"^eb_tf.prune: model 'sub' \(_Subclassed\) is not a "
                                         r"functional graph"):
        eb_tf.prune(sub, {"bn": np.array([T, F])})
    with pytest.raises(ValueError, match=r"^eb_tf.add_bn_l1: model 'sub' is a subclassed "
                                         r"model \(_Subclassed\)"):
        eb_tf.add_bn_l1(sub)
    assert list(eb_tf.gammas(sub)) == ["bn"]           # the search itself works
    unbuilt = keras3.Sequential([L.Conv2D(2, 1), L.BatchNormalization()])
    with pytest.raises(ValueError, match=r"^eb_tf.count_flops: model 'sequential\w*' "
                                         r"\(Sequential\) has no static layer graph"):
        eb_tf.count_flops(unbuilt)
    model = preact_resnet(keras3)
    with pytest.raises(ValueError, match=r"^eb_tf.prune: mask key 'nope' is not a trainable "
                                         r"BatchNormalization of model 'preact'"):
        eb_tf.prune(model, {"nope": np.ones(8, bool)})
