"""round_masks: widths become multiples, only top-|gamma| channels revive, still exact."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eb_tf
from eb_tf.compat import keras
from eb_tf.pruning import plan as channel_plan
from eb_tf.pruning import rounding, testing

L = keras.layers


def _chain(widths=(13, 21, 9)):
    inp = keras.Input((8, 8, 3))
    x = inp
    for i, w in enumerate(widths):
        x = L.Conv2D(w, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = L.ReLU()(L.BatchNormalization(name=f"bn{i}")(x))
    out = L.Dense(4, name="fc")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def _conv_widths(model):
    return {l.name: l.filters for l in model.layers if isinstance(l, L.Conv2D)}


def test_chain_widths_round_up_to_multiple_reviving_largest_gammas():
    model = _chain()
    testing.randomize_bn(model, seed=3)
    masks = eb_tf.channel_masks(model, 0.6)
    rounded = eb_tf.round_masks(model, masks, multiple=8)
    gam = eb_tf.gammas(model)
    for key, mask in masks.items():
        new = rounded[key]
        assert new[mask].all(), f"{key}: a kept channel was dropped"
        width, total = int(new.sum()), new.size
        assert width == total or width % 8 == 0, (key, width)
        assert width == min(total, -(-int(mask.sum()) // 8) * 8)
        revived = new & ~mask
        still_pruned = ~new
        if revived.any() and still_pruned.any():
            assert np.abs(gam[key][revived]).min() >= np.abs(gam[key][still_pruned]).max()
    pruned = eb_tf.prune(model, rounded)
    widths = _conv_widths(pruned)
    assert widths == {f"conv{i}": int(rounded[f"bn{i}"].sum()) for i in range(3)}
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    masked = eb_tf.apply_masks(model, rounded)
    assert testing.max_rel_error(masked(x, training=False), pruned(x, training=False)) <= 1e-4


def test_zero_gammas_are_never_counted_nor_revived_and_short_spaces_are_named():
    model = _chain((16, 24, 9))
    testing.randomize_bn(model, seed=3)
    bn0 = model.get_layer("bn0")
    gamma = bn0.gamma.numpy()
    gamma[[1, 5, 9]] = 0.0                    # exact zeros: prune folds them away
    bn0.gamma.assign(gamma)
    masks = {"bn0": np.abs(gamma) > np.sort(np.abs(gamma))[7],    # keeps 8 nonzero
             "bn1": np.arange(24) < 10, "bn2": np.ones(9, bool)}
    masks["bn0"][1] = True                    # kept by the mask, still folded by prune
    with pytest.warns(UserWarning, match=r"1 channel space\(s\) cannot reach a multiple of "
                      r"16: 'conv0' \(13 of 16\).*gamma exactly 0"):
        rounded = eb_tf.round_masks(model, masks, multiple=16)
    assert not rounded["bn0"][[5, 9]].any()   # zeros are not revived
    widths = _conv_widths(eb_tf.prune(model, rounded))
    assert widths["conv0"] == 13              # every nonzero channel of the space
    assert widths["conv1"] == 16              # physical widths: a multiple
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eight = eb_tf.round_masks(model, masks, multiple=8)
    assert _conv_widths(eb_tf.prune(model, eight))["conv0"] == 8
    assert eb_tf.round_masks(model, masks, multiple="none").keys() == masks.keys()


def test_residual_group_rounds_the_union_of_its_members():
    inp = keras.Input((8, 8, 3))
    a = L.BatchNormalization(name="bn_a")(L.Conv2D(12, 1, use_bias=False, name="conv_a")(inp))
    b = L.BatchNormalization(name="bn_b")(L.Conv2D(12, 1, use_bias=False, name="conv_b")(inp))
    x = L.ReLU()(L.Add()([a, b]))
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    masks = {"bn_a": np.arange(12) < 3, "bn_b": (np.arange(12) >= 3) & (np.arange(12) < 5)}
    rounded = eb_tf.round_masks(model, masks, multiple=4)
    union = rounded["bn_a"] | rounded["bn_b"]
    assert union.sum() == 8          # 5 live channels in the group -> 8
    assert _conv_widths(eb_tf.prune(model, rounded)) == {"conv_a": 8, "conv_b": 8}


def test_all_false_masks_stay_all_false():
    """Rounding does not undo a removal: a dead chain stays an error for prune, an
    identity residual branch stays the identity."""
    model = _chain()
    testing.randomize_bn(model, seed=5)
    masks = eb_tf.channel_masks(model, 0.5)
    masks["bn0"][:] = False
    rounded = eb_tf.round_masks(model, masks, multiple=8)
    assert not rounded["bn0"].any()
    with pytest.raises(ValueError, match=r"eb_tf.prune: .* dies at BN 'bn0'"):
        eb_tf.prune(model, rounded)
    inp = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization(name="stem_bn")(L.Conv2D(6, 3, padding="same")(inp)))
    y = L.ReLU()(L.BatchNormalization(name="bn1")(L.Conv2D(5, 3, padding="same", name="c1")(x)))
    y = L.BatchNormalization(name="bn2")(L.Conv2D(6, 3, padding="same", name="c2")(y))
    x = L.ReLU()(L.Add()([x, y]))
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    testing.randomize_bn(model, seed=5)
    masks = {"stem_bn": np.arange(6) < 3, "bn1": np.arange(5) < 3, "bn2": np.zeros(6, bool)}
    rounded = eb_tf.round_masks(model, masks, multiple=4)
    assert not rounded["bn2"].any()
    assert rounded["bn1"].tolist() == masks["bn1"].tolist()   # its space is not needed
    assert int(rounded["stem_bn"].sum()) == 4
    with pytest.warns(UserWarning, match="the block becomes the identity"):
        pruned = eb_tf.prune(model, rounded)
    assert _conv_widths(pruned)["c1"] == 1


def test_multiple_one_and_full_width_leave_masks_unchanged():
    model = _chain((8, 16, 8))
    testing.randomize_bn(model, seed=1)
    masks = eb_tf.channel_masks(model, 0.5)
    original = {k: v.copy() for k, v in masks.items()}
    for multiple in (1, 64):
        rounded = eb_tf.round_masks(model, masks, multiple=multiple)
        expect = masks if multiple == 1 else {k: np.ones_like(v) for k, v in masks.items()}
        assert {k: v.tolist() for k, v in rounded.items()} == \
            {k: v.tolist() for k, v in expect.items()}
    assert {k: v.tolist() for k, v in masks.items()} == \
        {k: v.tolist() for k, v in original.items()}     # the input is not modified


@pytest.mark.parametrize("multiple", [0, -8, 2.5, True, "8"])
def test_bad_multiple_names_the_value(multiple):
    model = _chain()
    with pytest.raises(ValueError, match=r"eb_tf.round_masks: multiple must be 'auto', 'none' "
                       r"or an int >= 1, got"):
        eb_tf.round_masks(model, eb_tf.channel_masks(model, 0.5), multiple=multiple)


@settings(max_examples=5)
@given(seed=st.integers(0, 2 ** 20), multiple=st.sampled_from([2, 4, 8]))
def test_random_graphs_round_every_controllable_space_and_stay_exact(seed, multiple):
    keras.backend.clear_session()
    model, _ = testing.random_model(seed, activation="relu", max_width=12)
    testing.randomize_bn(model, seed)
    masks = testing.random_masks(model, seed, keep=0.4)
    rounded = eb_tf.round_masks(model, masks, multiple=multiple)
    for key, mask in masks.items():
        assert rounded[key][mask].all()
    plan = channel_plan.analyze(model, rounded)
    before = rounding.space_widths(channel_plan.analyze(model, masks))
    readers = rounding._readers(plan)   # pylint: disable=protected-access
    needed = rounding._needed(plan)     # pylint: disable=protected-access
    for roots, (width, total) in rounding.space_widths(plan).items():
        assert width >= before[roots][0]
        if width % multiple and width != total and needed[np.asarray(roots)].any():
            # Not rounded: no masked BN reads a dead channel of it that could revive
            # (all-False masks stay all-False).
            dead = [r for r, k in zip(roots, plan.kept[np.asarray(roots)]) if not k]
            assert not any(not rounded[key][c] and rounded[key].any()
                           for r in dead for key, c in readers.get(r, []))
    for key, mask in masks.items():
        assert mask.any() or not rounded[key].any()
    x = np.random.default_rng(seed).normal(size=(2,) + model.input_shape[1:]).astype(np.float32)
    masked = eb_tf.apply_masks(model, rounded)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # dead residual branches: identity notes
            pruned = eb_tf.prune(model, rounded)
    except ValueError as e:                     # whole layers may die: a constant output
        assert "independent of its input" in str(e)
        assert not testing.output_varies(masked)
        return
    assert testing.max_rel_error(masked(x, training=False), pruned(x, training=False)) <= 1e-4


def test_rounding_only_adds_channels_so_min_channels_survives():
    model = _chain()
    testing.randomize_bn(model, seed=4)
    for scope in ("global", "layer"):
        masks = eb_tf.channel_masks(model, 0.99, scope=scope, min_channels=2)
        rounded = eb_tf.round_masks(model, masks, multiple=8)
        for key, mask in masks.items():
            assert mask.sum() >= 2 and rounded[key][mask].all()


def test_a_pre_activation_bn_reading_part_of_its_stream_is_rounded_within_it():
    from tests import pruning_testlib  # pylint: disable=import-outside-toplevel
    model = pruning_testlib.preact_resnet(keras, blocks=3, width=32)
    testing.randomize_bn(model, seed=5)
    gam = eb_tf.gammas(model)
    masks = {k: np.abs(g) >= np.quantile(np.abs(g), 0.6) for k, g in gam.items()}
    masks["b1_bn1"][:] = False
    masks["b1_bn1"][np.argsort(-np.abs(gam["b1_bn1"]))[:5]] = True    # reads 5 of 32
    rounded = eb_tf.round_masks(model, masks, multiple=8)
    plan = channel_plan.analyze(model, rounded)
    for op, h in zip(plan.graph.ops, plan.handlers):
        if op.layer.name in ("b1_bn1", "b2_bn1"):
            reads = plan.p_in[(op.index, 0)].size
            present = plan.phys[op.inputs[0]].size
            assert reads % 8 == 0 or reads == present, (op.layer.name, reads, present)
    # b1_bn1 grew from 5 (by the stream's rounding and its own), nothing was dropped
    assert int(rounded["b1_bn1"].sum()) % 8 == 0 and all(rounded[k][m].all()
                                                         for k, m in masks.items())
    ticket = eb_tf.prune(model, rounded)
    selects = [l for l in ticket.layers if type(l).__name__ == "ChannelSelect"]
    assert all(len(l.get_config()["indices"]) % 8 == 0 for l in selects), \
        [len(l.get_config()["indices"]) for l in selects]
    x = pruning_testlib.data(model)
    pruning_testlib.assert_exact(eb_tf.apply_masks(model, rounded), ticket, x)
