"""channel_plan.analyze: which channels survive, where gathers go, mask validation."""
import numpy as np
import pytest

from eb_tf.compat import keras
from eb_tf.pruning import liveness
from eb_tf.pruning import plan as channel_plan
from eb_tf.pruning.channel_select import ChannelSelect

L = keras.layers
T, F = True, False


def _cbr(x, filters, name, kernel=3):
    x = L.Conv2D(filters, kernel, padding="same", name=name)(x)
    return L.ReLU(name=f"{name}_relu")(L.BatchNormalization(name=f"{name}_bn")(x))


def _head(x):
    return L.Dense(2, name="head")(L.GlobalAveragePooling2D(name="gap")(x))


def _op(plan, name):
    return next(op for op in plan.graph.ops if op.layer.name == name)


def _widths(plan):
    return {k: v[0] for k, v in plan.producer_widths().items()}


def test_chain_drops_masked_channels_without_gathers():
    inp = keras.Input((6, 6, 3))
    model = keras.Model(inp, _head(_cbr(_cbr(inp, 4, "c1"), 3, "c2")))
    plan = channel_plan.analyze(model, {"c1_bn": np.array([T, F, T, F])})
    assert _widths(plan) == {"c1": 2, "c2": 3, "head": 2}
    assert plan.producer_widths()["c1"] == (2, 4)
    assert not any(plan.needs_gather(op, s) for op in plan.graph.ops for s in range(len(op.inputs)))
    np.testing.assert_array_equal(plan.p_in[(_op(plan, "c2").index, 0)], [0, 2])


def _preact(bn1_mask, final_mask):
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="stem")(inp)
    y = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(x))
    y = _cbr(y, 3, "conv1")
    y = L.Conv2D(4, 3, padding="same", name="conv2")(y)
    x = L.Add(name="add")([x, y])
    x = L.ReLU(name="relu_f")(L.BatchNormalization(name="bn_f")(x))
    model = keras.Model(inp, _head(x))
    return channel_plan.analyze(model, {"bn1": np.array(bn1_mask), "bn_f": np.array(final_mask)})


def test_preact_stream_keeps_channel_and_gathers_before_masking_bn():
    plan = _preact([T, T, F, F], [T, T, T, T])
    assert _widths(plan)["stem"] == 4 and _widths(plan)["conv2"] == 4
    bn1 = _op(plan, "bn1")
    assert plan.needs_gather(bn1, 0)                     # before the BN, not after it
    np.testing.assert_array_equal(plan.p_in[(bn1.index, 0)], [0, 1])
    assert not plan.needs_gather(_op(plan, "conv1"), 0)
    assert not plan.needs_gather(_op(plan, "add"), 0)


def test_preact_stream_width_is_union_of_its_readers():
    plan = _preact([F, T, T, F], [T, T, F, F])
    assert _widths(plan)["stem"] == 3 and _widths(plan)["conv2"] == 3   # {0, 1, 2}
    np.testing.assert_array_equal(plan.p_in[(_op(plan, "bn1").index, 0)], [1, 2])
    np.testing.assert_array_equal(plan.p_in[(_op(plan, "bn_f").index, 0)], [0, 1])


def test_add_group_keeps_channel_alive_in_any_member():
    inp = keras.Input((6, 6, 3))
    a = L.BatchNormalization(name="bn_a")(L.Conv2D(4, 3, padding="same", name="a")(inp))
    b = L.BatchNormalization(name="bn_b")(L.Conv2D(4, 3, padding="same", name="b")(inp))
    model = keras.Model(inp, _head(L.ReLU()(L.Add()([a, b]))))
    plan = channel_plan.analyze(model, {"bn_a": np.array([T, F, F, T]),
                                        "bn_b": np.array([T, T, F, F])})
    assert _widths(plan)["a"] == 3 and _widths(plan)["b"] == 3       # channel 2 dead in both
    np.testing.assert_array_equal(plan.phys[_op(plan, "a").outputs[0]], [0, 1, 3])


def _sigmoid_net(kernel):
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(3, 3, padding="same", name="c1")(inp)
    x = L.Activation("sigmoid", name="sig")(L.BatchNormalization(name="bn")(x))
    x = L.Conv2D(2, kernel, padding="same", use_bias=False, name="c2")(x)
    return keras.Model(inp, _head(x))


def test_sigmoid_after_masked_bn_keeps_channel_for_padded_conv():
    plan = channel_plan.analyze(_sigmoid_net(3), {"bn": np.array([T, F, T])})
    assert _widths(plan)["c1"] == 3                      # sigmoid(0) = 0.5 feeds a 3x3 'same'
    assert plan.vals[_op(plan, "sig").outputs[0]][1] == pytest.approx(0.5)


def test_sigmoid_constant_folds_into_one_by_one_conv():
    plan = channel_plan.analyze(_sigmoid_net(1), {"bn": np.array([T, F, T])})
    assert _widths(plan)["c1"] == 2
    np.testing.assert_allclose(plan.fold(_op(plan, "c2")), [0, 0.5, 0])


def test_concat_maps_channels_by_offset():
    inp = keras.Input((6, 6, 3))
    x = L.Concatenate(name="cat")([_cbr(inp, 3, "a"), _cbr(inp, 2, "b")])
    model = keras.Model(inp, _head(L.Conv2D(4, 1, name="c")(x)))
    plan = channel_plan.analyze(model, {"a_bn": np.array([T, F, T]), "b_bn": np.array([F, T])})
    assert _widths(plan)["a"] == 2 and _widths(plan)["b"] == 1
    np.testing.assert_array_equal(plan.phys[_op(plan, "cat").outputs[0]], [0, 2, 4])


def test_flatten_expands_channels_to_units():
    inp = keras.Input((2, 2, 3))
    model = keras.Model(inp, L.Dense(2, name="d")(L.Flatten(name="f")(_cbr(inp, 3, "a"))))
    plan = channel_plan.analyze(model, {"a_bn": np.array([F, T, T])})
    np.testing.assert_array_equal(plan.p_in[(_op(plan, "d").index, 0)],
                                  [1, 2, 4, 5, 7, 8, 10, 11])


def test_never_removes_the_last_channel_and_outputs_keep_shape():
    inp = keras.Input((6, 6, 3))
    x = _cbr(_cbr(inp, 3, "a"), 4, "b")
    model = keras.Model(inp, [x, _head(x)])
    plan = channel_plan.analyze(model, {"a_bn": np.array([F, F, F]),
                                        "b_bn": np.array([F, T, F, F])})
    assert _widths(plan)["a"] == 1 and _widths(plan)["b"] == 4     # b's output is a model output


def test_multiply_group_drops_channel_zero_in_one_member():
    inp = keras.Input((6, 6, 3))
    x = _cbr(inp, 4, "a")
    gate = L.Dense(4, activation="sigmoid", name="g")(L.GlobalAveragePooling2D()(x))
    x = L.Multiply()([x, L.Reshape((1, 1, 4))(gate)])
    model = keras.Model(inp, _head(L.Conv2D(2, 3, padding="same", name="c")(x)))
    plan = channel_plan.analyze(model, {"a_bn": np.array([T, F, T, F])})
    assert _widths(plan)["a"] == 2 and _widths(plan)["g"] == 2


def test_shared_conv_reads_union_of_its_calls():
    shared = L.Conv2D(2, 3, padding="same", name="shared")
    i1, i2 = keras.Input((6, 6, 3)), keras.Input((6, 6, 3))
    y = L.Add()([shared(_cbr(i1, 3, "a")), shared(_cbr(i2, 3, "b"))])
    plan = channel_plan.analyze(keras.Model([i1, i2], _head(y)),
                                {"a_bn": np.array([T, F, F]), "b_bn": np.array([F, F, T])})
    calls = [op for op in plan.graph.ops if op.layer.name == "shared"]
    for op in calls:
        np.testing.assert_array_equal(plan.p_in[(op.index, 0)], [0, 2])
    assert _widths(plan)["a"] == 2 and _widths(plan)["b"] == 2


def _signal(plan, name):
    return plan.signal[_op(plan, name).outputs[0]].tolist()


def test_signal_follows_channels_and_dies_at_masked_bn_channels():
    inp = keras.Input((2, 2, 3))
    a = _cbr(inp, 3, "a")
    b = L.DepthwiseConv2D(3, padding="same", name="dw")(a)
    b = L.ReLU(name="b_relu")(L.BatchNormalization(name="b_bn")(b))
    x = L.Concatenate(name="cat")([a, b])
    model = keras.Model(inp, L.Dense(2, name="d")(L.Flatten(name="f")(x)))
    plan = channel_plan.analyze(model, {"a_bn": np.array([T, F, T]),
                                        "b_bn": np.array([F, F, T])})
    assert _signal(plan, "a") == [T, T, T]                       # a producer mixes
    assert _signal(plan, "a_relu") == [T, F, T]
    assert _signal(plan, "b_relu") == [F, F, T]                  # per channel: [T, F, T] & mask
    assert _signal(plan, "cat") == [T, F, T, F, F, T]
    assert _signal(plan, "f") == [T, F, T, F, F, T] * 4
    assert _signal(plan, "d") == [T, T]
    assert liveness.check_signal(plan) == []


def test_signal_through_multiply_dies_only_at_a_zero_gate():
    inp = keras.Input((6, 6, 3))
    x = _cbr(inp, 4, "a")
    g = L.Dense(4, name="g")(L.GlobalAveragePooling2D()(x))
    g = L.ReLU(name="g_relu")(L.BatchNormalization(name="g_bn")(g))
    x = L.Multiply(name="mul")([x, L.Reshape((1, 1, 4))(g)])
    model = keras.Model(inp, _head(x))
    plan = channel_plan.analyze(model, {"g_bn": np.array([T, F, T, F])})
    assert _signal(plan, "mul") == [T, F, T, F]                  # x * 0 = 0
    with pytest.raises(ValueError, match=r"eb_tf.prune: these masks make the model's output "
                       r"'head' independent of its input .* dies at BN 'g_bn'"):
        liveness.check_signal(channel_plan.analyze(model, {"g_bn": np.zeros(4, bool)}))


def test_check_signal_names_the_bn_a_channel_select_starves():
    inp = keras.Input((6, 6, 3))
    x = ChannelSelect([0, 1], name="sel")(_cbr(inp, 4, "a"))
    model = keras.Model(inp, _head(L.Conv2D(2, 3, padding="same", name="c")(x)))
    plan = channel_plan.analyze(model, {"a_bn": np.array([F, F, T, T])})
    assert _signal(plan, "sel") == [F, F]
    with pytest.raises(ValueError, match=r"dies at BN 'a_bn' \(its mask keeps channels "
                       r"\[2, 3\] of 4, the signal reaches it on \[0, 1, 2, 3\]\)"):
        liveness.check_signal(plan, "eb_tf.prune")


def test_dead_output_plan_still_analyses_but_check_signal_raises():
    inp = keras.Input((6, 6, 3))
    x = _cbr(_cbr(inp, 3, "a"), 4, "b")
    model = keras.Model(inp, [x, _head(x)])
    plan = channel_plan.analyze(model, {"a_bn": np.array([F, F, F])})
    assert _widths(plan)["a"] == 1                               # analyze itself never raises
    with pytest.raises(ValueError, match=r"output 'b_relu', 'head' independent of its input "
                       r"\(a constant\): the signal dies at BN 'a_bn' \(its mask keeps 0 of "
                       r"3 channels\)"):
        liveness.check_signal(plan, "eb_tf.prune")


@pytest.mark.parametrize("masks, message", [
    ({"nope": np.ones(3, bool)}, r"mask key 'nope' is not a trainable BatchNormalization"),
    ({"a_bn": np.ones(3)}, r"mask 'a_bn' must be a bool array .* got dtype float64"),
    ({"a_bn": np.ones(4, bool)}, r"mask 'a_bn' has shape \(4,\), but the BN has 3 channels"),
    ([np.ones(3, bool)], "masks must be a dict"),
])
def test_check_masks_names_the_key(masks, message):
    inp = keras.Input((6, 6, 3))
    model = keras.Model(inp, _head(_cbr(inp, 3, "a")))
    with pytest.raises(ValueError, match=message):
        channel_plan.check_masks(model, masks, "eb_tf.prune")
