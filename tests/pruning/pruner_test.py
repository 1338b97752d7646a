"""apply_masks / prune: exactness, liveness, named architectures, saving, errors."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eb_tf
from eb_tf.compat import keras, tf
from eb_tf.pruning import pruner, testing
from eb_tf.pruning.channel_select import ChannelSelect
from tests.pruning_testlib import assert_exact as _assert_exact
from tests.pruning_testlib import data as _data
from tests.pruning_testlib import mask_in_place as _mask_in_place
from tests.pruning_testlib import nested_multi_io, preact_resnet

L = keras.layers
T, F = True, False
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _gathers(model):
    return [layer for layer in model.layers if isinstance(layer, ChannelSelect)]


_DEAD = r"independent of its input \(a constant\): the signal dies at BN"


def _prune_or_raise(model, masks, x):
    """prune, checked: exact, or the dead-output error with a constant masked output."""
    masked = pruner.apply_masks(model, masks)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruned = pruner.prune(model, masks)
    except ValueError as e:
        assert "independent of its input" in str(e), e
        assert not testing.output_varies(masked), "prune refused a model whose output varies"
        return None
    _assert_exact(masked, pruned, x)
    return pruned


@settings(max_examples=6)
@given(seed=st.integers(0, 2 ** 20), keep=st.sampled_from([0.2, 0.5, 0.8]))
def test_prune_equals_masked_model_on_random_graphs(seed, keep):
    keras.backend.clear_session()
    model, _ = testing.random_model(seed, activation="relu")
    testing.randomize_bn(model, seed)
    masks = testing.random_masks(model, seed, keep=keep)      # whole layers may die
    pruned = _prune_or_raise(model, masks, _data(model, seed))
    assert pruned is None or pruned.count_params() <= model.count_params()


@settings(max_examples=10)
@given(seed=st.integers(0, 2 ** 20), keep=st.sampled_from([0.3, 0.6, 1.0]),
       dead=st.sampled_from([0.15, 0.3, 0.6]))
def test_prune_raises_exactly_when_the_masks_make_the_output_constant(seed, keep, dead):
    """Liveness by data: with all-False masks in random graphs (LeakyReLU, so no unit
    is dead on data), prune raises iff two random inputs give the masked model the same
    output; otherwise it is exact."""
    keras.backend.clear_session()
    model, _ = testing.random_model(seed, activation="leaky")
    testing.randomize_bn(model, seed)
    masks = testing.random_masks(model, seed, keep=keep, min_keep=1, dead=dead)
    masked = pruner.apply_masks(model, masks)
    if testing.output_varies(masked, seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruned = pruner.prune(model, masks)
        _assert_exact(masked, pruned, _data(model, seed))
    else:
        with pytest.raises(ValueError, match=_DEAD) as info:
            pruner.prune(model, masks)
        named = [k for k in masks if repr(k) in str(info.value)]
        assert named, info.value
        opened = {k: np.ones_like(m) if k in named else m for k, m in masks.items()}
        assert testing.output_varies(pruner.apply_masks(model, opened), seed), \
            "unmasking the named BNs should bring the signal back"


@settings(max_examples=5)
@given(seed=st.integers(0, 2 ** 20))
def test_pruned_widths_equal_independent_live_counts(seed):
    keras.backend.clear_session()
    model, spaces = testing.random_model(seed, activation="leaky")
    testing.randomize_bn(model, seed)
    masks = testing.random_masks(model, seed, min_keep=1)
    x = _data(model, seed, n=8)
    masked = pruner.apply_masks(model, masks)
    testing.calibrate_bn(masked, x, seed)
    if not testing.output_varies(masked, seed):   # BN - depthwise - BN keeping disjoint sets
        with pytest.raises(ValueError, match=_DEAD):
            pruner.prune(masked, masks)
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
            if varies:
                assert width == max(1, live), (name, producers)
            else:   # a constant space: its channels may fold into the consumer's bias
                assert width <= max(1, live), (name, producers)


def _vgg_like():
    x = inp = keras.Input((16, 16, 3))
    for i, f in enumerate([8, 8, "M", 16, 16, "M"]):
        if f == "M":
            x = L.MaxPooling2D()(x)
            continue
        x = L.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = L.ReLU()(L.BatchNormalization(name=f"bn{i}")(x))
    x = L.Dense(10, name="fc")(L.Flatten()(x))
    return keras.Model(inp, x, name="vgg_like")


def _no_rebuild(monkeypatch):
    def _fail(plan):
        raise AssertionError("the rebuild must not start")
    monkeypatch.setattr(pruner, "_Rebuilder", _fail)


def test_all_false_mask_in_a_plain_conv_chain_is_an_error_naming_the_bn(monkeypatch):
    model = _vgg_like()
    masks = testing.random_masks(model, 1, min_keep=1)
    masks["bn3"] = np.zeros(16, bool)
    assert not testing.output_varies(pruner.apply_masks(model, masks))
    _no_rebuild(monkeypatch)
    with pytest.raises(ValueError, match=(
            r"^eb_tf.prune: these masks make the model's output 'fc' independent of its "
            r"input \(a constant\): the signal dies at BN 'bn3' \(its mask keeps 0 of 16 "
            r"channels\), and no path from the input to the output avoids it. Keep at "
            r"least one channel there, e.g. pass min_channels=1 to eb_tf.channel_masks, "
            r"or use a lower ratio.$")):
        pruner.prune(model, masks)
    masks["bn0"] = np.zeros(8, bool)      # two in a row: both named
    with pytest.raises(ValueError, match=r"dies at BNs 'bn0' \(its mask keeps 0 of 8 "
                       r"channels\), 'bn3' \(its mask keeps 0 of 16 channels\), and no "
                       r"path .* avoids them"):
        pruner.prune(model, masks)


def test_bn_depthwise_bn_keeping_disjoint_channels_is_an_error_naming_the_second():
    inp = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn_a")(L.Conv2D(4, 3, padding="same")(inp)))
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization(name="bn_b")(x))
    model = keras.Model(inp, L.Dense(2, name="fc")(L.GlobalAveragePooling2D()(x)))
    masks = {"bn_a": np.array([T, F, F, F]), "bn_b": np.array([F, T, T, F])}   # both keep >= 1
    assert not testing.output_varies(pruner.apply_masks(model, masks))
    with pytest.raises(ValueError, match=r"dies at BN 'bn_b' \(its mask keeps channels "
                       r"\[1, 2\] of 4, none of the channels \[0\] that the signal reaches "
                       r"it on after 'bn_a'\).* must keep a common channel, which "
                       r"min_channels does not ensure: .*exclude=\['bn_b'\]"):
        pruner.prune(model, masks)


def _post_residual():
    x = inp = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization(name="stem_bn")(L.Conv2D(6, 3, padding="same")(x)))
    y = L.ReLU()(L.BatchNormalization(name="blk_bn1")(
        L.Conv2D(4, 3, padding="same", name="blk_conv1")(x)))
    y = L.BatchNormalization(name="blk_bn2")(L.Conv2D(6, 3, padding="same", name="blk_conv2")(y))
    x = L.ReLU()(L.Add(name="blk_add")([x, y]))
    return keras.Model(inp, L.Dense(3, name="fc")(L.Flatten()(L.MaxPooling2D(4)(x))))


@pytest.mark.parametrize("dead", [["blk_bn2"], ["blk_bn1"], ["blk_bn1", "blk_bn2"]])
def test_all_false_residual_branch_becomes_the_identity_with_one_warning(dead):
    model = _post_residual()
    testing.randomize_bn(model, 13)
    masks = testing.random_masks(model, 13, min_keep=1)
    for key in dead:
        masks[key][:] = False
    with pytest.warns(UserWarning) as record:
        pruned = pruner.prune(model, masks)
    notes = [str(w.message) for w in record if "the signal dies" in str(w.message)]
    named = ", ".join(f"{k!r} (its mask keeps 0 of {masks[k].size} channels)" for k in dead)
    assert notes == [f"eb_tf.prune: the signal dies at BN{'s' if len(dead) > 1 else ''} "
                     f"{named}, so its branch into 'blk_add' (Add) is a constant: the block "
                     "becomes the identity (plus a constant); the skip path carries the "
                     "signal."]
    _assert_exact(pruner.apply_masks(model, masks), pruned, _data(model, 13))
    assert pruned.get_layer("blk_conv1").filters == 1        # the branch is gone
    assert pruned.count_params() < model.count_params()


def test_all_false_preact_branch_is_the_identity_and_exact():
    model = preact_resnet(keras)
    testing.randomize_bn(model, 14)
    masks = testing.random_masks(model, 14, min_keep=1)
    masks["b1_bn1"][:] = False
    with pytest.warns(UserWarning, match=r"BN 'b1_bn1' .* the block becomes the identity"):
        pruned = pruner.prune(model, masks)
    _assert_exact(pruner.apply_masks(model, masks), pruned, _data(model, 14))
    masks["bn_final"][:] = False                               # the stage's close: dead
    with pytest.raises(ValueError, match=r"output 'dense' .* dies at BN 'bn_final'"):
        pruner.prune(model, masks)


def test_all_false_concat_branch_is_allowed_and_both_dead_is_an_error():
    inp = keras.Input((8, 8, 3))
    a = L.ReLU()(L.BatchNormalization(name="bn_a")(L.Conv2D(4, 3, padding="same")(inp)))
    b = L.ReLU()(L.BatchNormalization(name="bn_b")(L.Conv2D(3, 3, padding="same")(a)))
    x = L.Concatenate(name="cat")([a, b])
    model = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(x)))
    testing.randomize_bn(model, 15)
    masks = {"bn_a": np.array([T, F, T, T]), "bn_b": np.zeros(3, bool)}
    with pytest.warns(UserWarning, match=r"BN 'bn_b' .* into 'cat' \(Concatenate\) is a "
                      r"constant: the other inputs carry the signal"):
        pruned = pruner.prune(model, masks)
    _assert_exact(pruner.apply_masks(model, masks), pruned, _data(model, 15))
    masks["bn_a"][:] = False
    with pytest.raises(ValueError, match=r"output 'fc' .* dies at BN 'bn_a' \(its mask "
                       r"keeps 0 of 4 channels\), and no path"):
        pruner.prune(model, masks)


@pytest.mark.parametrize("gate, error", [("relu", True), ("sigmoid", False)])
def test_squeeze_excite_gate_behind_an_all_false_bn(gate, error):
    """A gate that the mask makes 0 (BN -> ReLU) kills the block; sigmoid(0) = 0.5 does not."""
    inp = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn_x")(L.Conv2D(4, 3, padding="same")(inp)))
    s = L.Dense(4, name="se")(L.GlobalAveragePooling2D()(x))
    s = L.Activation(gate)(L.BatchNormalization(name="bn_gate")(s))
    x = L.Multiply(name="gate")([x, L.Reshape((1, 1, 4))(s)])
    model = keras.Model(inp, L.Dense(2, name="fc")(L.GlobalAveragePooling2D()(x)))
    testing.randomize_bn(model, 16)
    masks = {"bn_x": np.array([T, T, F, T]), "bn_gate": np.zeros(4, bool)}
    masked = pruner.apply_masks(model, masks)
    assert testing.output_varies(masked) != error
    if error:
        with pytest.raises(ValueError, match=r"output 'fc' .* dies at BN 'bn_gate'"):
            pruner.prune(model, masks)
    else:
        with pytest.warns(UserWarning, match=r"BN 'bn_gate' .* into 'gate' \(Multiply\)"):
            pruned = pruner.prune(model, masks)
        _assert_exact(masked, pruned, _data(model, 16))


def test_one_dead_output_of_two_is_an_error_naming_it():
    inp = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn_x")(L.Conv2D(4, 3, padding="same")(inp)))
    h = L.ReLU()(L.BatchNormalization(name="bn_h")(L.Conv2D(3, 1)(x)))
    model = keras.Model(inp, [L.Dense(2, name="cls")(L.GlobalAveragePooling2D()(x)),
                              L.Conv2D(1, 1, name="map")(h)])
    with pytest.raises(ValueError, match=r"output 'map' independent of its input .* BN 'bn_h'"):
        pruner.prune(model, {"bn_h": np.zeros(3, bool)})


def test_prune_uses_user_masks_as_given_and_channel_masks_keeps_min_channels():
    """prune does not apply min_channels (exactness with apply_masks needs the masks as
    given); channel_masks applies it, so its masks prune even at ratio 0.99."""
    model = _vgg_like()
    testing.randomize_bn(model, 17)
    starved = eb_tf.channel_masks(model, 0.99, min_channels=0)
    assert sum(not m.any() for m in starved.values()) >= 3
    with pytest.raises(ValueError, match=r"independent of its input .* min_channels=1"):
        pruner.prune(model, starved)
    for scope in ("global", "layer"):
        masks = eb_tf.channel_masks(model, 0.99, scope=scope)          # min_channels=1
        assert all(m.sum() >= 1 for m in masks.values())
        pruned = pruner.prune(model, masks)
        _assert_exact(pruner.apply_masks(model, masks), pruned, _data(model))
        assert [pruned.get_layer(f"conv{i}").filters for i in (0, 1, 3, 4)] == \
            [int(masks[f"bn{i}"].sum()) for i in (0, 1, 3, 4)]


def test_prune_vgg_like_is_exact_smaller_and_gather_free():
    model = _vgg_like()
    testing.randomize_bn(model, 1)
    masks = testing.random_masks(model, 1)
    pruned = pruner.prune(model, masks)
    _assert_exact(pruner.apply_masks(model, masks), pruned, _data(model))
    assert not _gathers(pruned)
    for i in (0, 1, 3, 4):
        assert pruned.get_layer(f"conv{i}").filters == max(1, masks[f"bn{i}"].sum())
    assert pruned.get_layer("fc").kernel.shape[0] == 16 * max(1, masks["bn4"].sum())


def test_prune_preact_resnet_gathers_in_front_of_masking_bn():
    model = preact_resnet(keras)
    testing.randomize_bn(model, 2)
    masks = {k: np.array(m) for k, m in {
        "b0_bn1": [T, F, T, F, T, F, T, F], "b1_bn1": [F, F, F, F, T, T, T, T],
        "bn_final": [T, T, F, F, F, F, F, F], "b0_bn2": [T, F, T, T]}.items()}
    pruned = pruner.prune(model, masks)
    _assert_exact(pruner.apply_masks(model, masks), pruned, _data(model))
    assert pruned.get_layer("stem").filters == 8 - 1          # channel 3: masked everywhere
    gathers = {g.name: g.indices for g in _gathers(pruned)}
    assert gathers == {"b0_bn1_select": [0, 2, 3, 5], "b1_bn1_select": [3, 4, 5, 6],
                       "bn_final_select": [0, 1]}
    assert pruned.get_layer("b0_bn1").gamma.shape == (4,)     # the BN behind the gather
    assert pruned.get_layer("b0_conv1").filters == 3


def test_prune_mobilenetv2_alpha035_is_exact_and_smaller():
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                           weights=None, classes=10)
    testing.randomize_bn(model, 3)
    masks = testing.random_masks(model, 3, keep=0.6)
    pruned = pruner.prune(model, masks)
    _assert_exact(_mask_in_place(model, masks), pruned, _data(model, n=2))
    assert pruned.count_params() < 0.8 * model.count_params()
    assert eb_tf.count_flops(pruned).total < eb_tf.count_flops(model).total


@pytest.mark.parametrize("name, width", [
    ("vgg16", 0.25), ("preresnet20_basic", 0.5),
    pytest.param("preresnet56", 0.5, marks=pytest.mark.slow), ("resnet18", 0.125),
    pytest.param("resnet50", 0.125, marks=pytest.mark.slow)])
def test_prune_zoo_models_exact_and_smaller(name, width):
    model = eb_tf.models.build(name, 10, (32, 32, 3), width=width)
    testing.randomize_bn(model, 4)
    masks = testing.random_masks(model, 4)
    pruned = pruner.prune(model, masks)
    _assert_exact(_mask_in_place(model, masks), pruned, _data(model, n=2))
    assert eb_tf.count_flops(pruned).total < 0.8 * eb_tf.count_flops(model).total
    assert pruned.count_params() < model.count_params()


def test_prune_sequential_returns_functional_model():
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(4, 3, name="c"),
                              L.BatchNormalization(name="bn"), L.ReLU(), L.Flatten(),
                              L.Dense(3, name="d")], name="seq")
    testing.randomize_bn(model, 5)
    masks = {"bn": np.array([F, T, T, F])}
    pruned = pruner.prune(model, masks)
    assert not isinstance(pruned, keras.Sequential) and pruned.name == "seq"
    _assert_exact(pruner.apply_masks(model, masks), pruned, _data(model))
    assert pruned.get_layer("d").kernel.shape == (16 * 2, 3)


def test_prune_nested_multi_input_multi_output_and_shared_layer():
    model, masks, x = nested_multi_io(keras)
    pruned = pruner.prune(model, masks)
    _assert_exact(pruner.apply_masks(model, masks), pruned, x)
    # the shared conv reads the union {0, 2} | {2, 3} from both calls
    assert pruned.get_layer("shared").kernel.shape[2] == 3
    assert pruned.get_layer("bb").get_layer("bb_c").filters == 3
    assert pruned.get_layer("b_c").filters == 3
    assert [g.indices for g in _gathers(pruned)] == [[0, 1]]  # o2 reads only {0, 2}
    assert pruned.output_names == model.output_names == ["o1", "o2"]
    assert set(pruned(x, training=False)) == {"cls", "map"}   # the dict structure survives


def test_prune_folds_sigmoid_constant_into_one_by_one_conv_bias():
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="c1")(inp)
    x = L.Activation("sigmoid")(L.BatchNormalization(name="bn")(x))
    folded = L.Conv2D(2, 1, use_bias=False, name="one")(x)
    out = L.Conv2D(2, 3, padding="same", name="three")(L.MaxPooling2D()(folded))
    model = keras.Model(inp, out)
    testing.randomize_bn(model, 7)
    masks = {"bn": np.array([T, F, T, F])}
    pruned = pruner.prune(model, masks)
    _assert_exact(pruner.apply_masks(model, masks), pruned, _data(model))
    assert pruned.get_layer("c1").filters == 2
    one = pruned.get_layer("one")
    assert one.use_bias and one.kernel.shape == (1, 1, 2, 2)
    w = model.get_layer("one").kernel.numpy()[0, 0]
    np.testing.assert_allclose(one.bias.numpy(), 0.5 * (w[1] + w[3]), rtol=1e-5)


def test_prune_twice_through_gathers_is_exact():
    model = preact_resnet(keras)
    testing.randomize_bn(model, 8)
    masks = testing.random_masks(model, 8)
    once = pruner.prune(model, masks)
    masks2 = testing.random_masks(once, 9, keep=0.7)
    twice = pruner.prune(once, masks2)
    _assert_exact(pruner.apply_masks(once, masks2), twice, _data(model))


def test_apply_masks_zeroes_gamma_beta_only_and_copies():
    model = _vgg_like()
    testing.randomize_bn(model, 10)
    before = [w.copy() for w in model.get_weights()]
    mask = np.array([T, F] * 4)
    masked = pruner.apply_masks(model, {"bn0": mask})
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)                 # original untouched
    bn, orig = masked.get_layer("bn0"), model.get_layer("bn0")
    np.testing.assert_array_equal(bn.gamma.numpy(), np.where(mask, orig.gamma.numpy(), 0))
    np.testing.assert_array_equal(bn.beta.numpy(), np.where(mask, orig.beta.numpy(), 0))
    np.testing.assert_array_equal(bn.moving_mean.numpy(), orig.moving_mean.numpy())
    np.testing.assert_array_equal(masked.get_layer("conv0").kernel.numpy(),
                                  model.get_layer("conv0").kernel.numpy())


def test_pruned_model_trains_and_converts_to_tflite():
    model = preact_resnet(keras)
    masks = testing.random_masks(model, 11)
    pruned = pruner.prune(model, masks)
    assert _gathers(pruned)
    pruned.compile(optimizer="sgd", loss=keras.losses.MeanSquaredError())
    loss = pruned.train_on_batch(_data(model), np.zeros((4, 5), np.float32))
    assert np.isfinite(loss)
    blob = tf.lite.TFLiteConverter.from_keras_model(pruned).convert()
    assert len(blob) > 1000


def test_pruned_model_saves_and_loads_in_fresh_process(tmp_path):
    model = preact_resnet(keras)
    testing.randomize_bn(model, 12)
    pruned = pruner.prune(model, testing.random_masks(model, 12))
    assert _gathers(pruned)
    path, xpath = str(tmp_path / "pruned.keras"), str(tmp_path / "x.npy")
    eb_tf.io_utils.atomic_save_model(pruned, path)
    x = _data(model)
    np.save(xpath, x)
    code = ("import sys, numpy as np, eb_tf; from eb_tf.compat import keras; "
            "m = keras.models.load_model(sys.argv[1]); "
            "np.save(sys.argv[2] + '.out.npy', m(np.load(sys.argv[2]), training=False).numpy()); "
            "print(sorted({type(l).__name__ for l in m.layers}))")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", code, path, xpath], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ChannelSelect" in run.stdout
    np.testing.assert_allclose(np.load(xpath + ".out.npy"), pruned(x, training=False).numpy(),
                               rtol=0, atol=1e-5)


def test_prune_unknown_error_refuses_unmapped_layer_before_building(monkeypatch):
    def _no_build(plan):
        raise AssertionError("the rebuild must not start")
    monkeypatch.setattr(pruner, "_Rebuilder", _no_build)
    inp = keras.Input((4, 4, 3))
    x = L.BatchNormalization(name="bn")(L.Conv2D(3, 1)(inp))
    model = keras.Model(inp, L.Dense(2)(L.Lambda(lambda t: t * 2, name="lam")(x)))
    with pytest.raises(ValueError, match=r"eb_tf.prune: layer 'lam' \(Lambda\) is not supported"):
        pruner.prune(model, {"bn": np.array([T, F, T])}, unknown="error")
    with pytest.raises(ValueError, match=r"unknown='bogus' must be one of \('barrier', 'error'\)"):
        pruner.prune(model, {}, unknown="bogus")


def test_prune_and_apply_masks_reject_bad_input():
    model = _vgg_like()
    with pytest.raises(ValueError, match=r"eb_tf.prune: mask key 'bn9' is not a trainable"):
        pruner.prune(model, {"bn9": np.ones(8, bool)})
    with pytest.raises(ValueError, match=r"eb_tf.apply_masks: mask 'bn0' must be a bool"):
        pruner.apply_masks(model, {"bn0": np.ones(8, np.int32)})
    with pytest.raises(ValueError, match="eb_tf.prune expects a Keras model"):
        pruner.prune("model", {})
