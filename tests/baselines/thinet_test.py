"""eb_tf.baselines.thinet: ThiNet's choice on real networks, its rescaling, exact tickets."""
import itertools
import warnings

import numpy as np
import pytest

import eb_tf
from eb_tf.baselines import contributions, thinet
from eb_tf.compat import keras
from eb_tf.pruning import testing

L = keras.layers


def _one_layer(seed, channels=6):
    """conv1 -> BN -> ReLU -> conv2: the layer ThiNet prunes and the one it reconstructs."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    h = L.Conv2D(channels, 3, padding="same", use_bias=False, name="conv1")(inputs)
    h = L.ReLU()(L.BatchNormalization(name="bn1")(h))
    model = keras.Model(inputs, L.Conv2D(4, 3, padding="same", use_bias=False,
                                         name="conv2")(h))
    testing.randomize_bn(model, seed)
    return model


def _images(seed, n=64, shape=(8, 8, 3)):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(np.float32)


def _output_error(model, masks, x, reference):
    return float(np.sum((eb_tf.apply_masks(model, masks)(x).numpy() - reference) ** 2))


def test_greedy_choice_matches_the_brute_force_choice_on_one_layer():
    """Every way of removing 3 of 6 channels, scored on the network's real conv2 output
    (all positions and filters); ThiNet sees 10 sampled entries per image."""
    model, x = _one_layer(0), _images(0)
    y = model(x).numpy()
    errors = {}
    for removed in itertools.combinations(range(6), 3):
        mask = np.ones(6, bool)
        mask[list(removed)] = False
        errors[removed] = _output_error(model, {"bn1": mask}, x, y)
    best, second = sorted(errors.values())[:2]
    assert second > 1.1 * best          # the premise: one clear optimum on this layer
    reference = {"bn1": np.array([True] * 3 + [False] * 3)}
    result = thinet.thinet_masks(model, reference, [x], seed=0, rescale=False)
    chosen = tuple(np.flatnonzero(~result.masks["bn1"]))
    assert errors[chosen] == best
    assert result.chosen == ("bn1",) and result.samples == 64


@pytest.mark.parametrize("seed", range(3))
def test_rescaling_reduces_the_reconstruction_error_on_held_out_images(seed):
    model, x, held_out = _one_layer(seed), _images(seed), _images(100 + seed)
    reference = {"bn1": np.array([True, False] * 3)}
    result = thinet.thinet_masks(model, reference, [x[:32], x[32:]], seed=seed)
    plain, scaled = result.errors["bn1"]
    assert scaled < plain                                    # on the sample (least squares)
    y = model(held_out).numpy()
    assert _output_error(result.model, result.masks, held_out, y) < \
        _output_error(model, result.masks, held_out, y)       # and on images it never saw
    # only conv2's kernel changed, and only on its kept input channels
    old, new = (m.get_layer("conv2").get_weights()[0] for m in (model, result.model))
    keep = result.masks["bn1"]
    np.testing.assert_array_equal(old[:, :, ~keep], new[:, :, ~keep])
    assert not np.allclose(old[:, :, keep], new[:, :, keep])
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0],
                                  result.model.get_layer("conv1").get_weights()[0])


def _vgg_like():
    inputs = keras.Input((16, 16, 3))
    h = inputs
    for i, filters in enumerate((8, 8, "M", 12, 12)):
        if filters == "M":
            h = L.MaxPooling2D()(h)
            continue
        h = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(h)
        h = L.ReLU()(L.BatchNormalization(name=f"bn{i}")(h))
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, L.Dense(5, name="head")(h))


def _residual():
    inputs = keras.Input((8, 8, 3))
    h = L.ReLU()(L.BatchNormalization(name="stem_bn")(L.Conv2D(6, 3, padding="same")(inputs)))
    y = L.ReLU()(L.BatchNormalization(name="inner_bn")(L.Conv2D(5, 3, padding="same")(h)))
    y = L.BatchNormalization(name="add_bn")(L.Conv2D(6, 3, padding="same")(y))
    h = L.ReLU()(L.Add()([h, y]))
    return keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(h)))


@pytest.mark.parametrize("build, chosen", [
    (_vgg_like, ("bn0", "bn1", "bn3", "bn4")),
    (_residual, ("inner_bn",)),                # stem_bn forks, add_bn feeds the Add
])
def test_ticket_is_exact_with_the_reference_counts_and_coupled_layers_keep_it(build, chosen):
    model = build()
    testing.randomize_bn(model, 1)
    x = _images(2, 32, model.input_shape[1:])
    testing.calibrate_bn(model, x)
    reference = eb_tf.channel_masks(model, 0.5)
    result = thinet.thinet_masks(model, reference, [x], seed=3)
    assert result.chosen == chosen
    for key, mask in reference.items():
        assert result.masks[key].sum() == mask.sum()          # the reference's width
        if key not in chosen:
            np.testing.assert_array_equal(result.masks[key], mask)
    ticket = eb_tf.prune(result.model, result.masks)
    assert eb_tf.count_flops(ticket).total < eb_tf.count_flops(model).total
    assert testing.max_rel_error(eb_tf.apply_masks(result.model, result.masks)(x),
                                 ticket(x)) <= 1e-4


@pytest.mark.parametrize("seed", range(6))
def test_tickets_of_random_graphs_are_exact(seed):
    model, _ = testing.random_model(seed, blocks=4)
    testing.randomize_bn(model, seed)
    x = _images(seed, 16)
    testing.calibrate_bn(model, x)
    result = thinet.thinet_masks(model, eb_tf.channel_masks(model, 0.4), [x], seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # a dead branch pruned away is a warning
        ticket = eb_tf.prune(result.model, result.masks)
    assert testing.max_rel_error(eb_tf.apply_masks(result.model, result.masks)(x),
                                 ticket(x)) <= 1e-4


def test_bad_reference_or_images_are_named():
    model = _one_layer(0)
    with pytest.raises(ValueError, match=r"reference mask key 'bn9' is not a BN layer"):
        thinet.thinet_masks(model, {"bn9": np.ones(6, bool)}, [_images(0, 2)])
    with pytest.raises(ValueError, match=r"reference mask 'bn1' has 4 entries but the BN "
                                         r"has 6 channels"):
        thinet.thinet_masks(model, {"bn1": np.ones(4, bool)}, [_images(0, 2)])
    with pytest.raises(ValueError, match="images is empty"):
        thinet.thinet_masks(model, {"bn1": np.ones(6, bool)}, [])


def test_rescale_next_layers_scales_input_channels_of_a_dense_head():
    inputs = keras.Input((4, 4, 2))
    h = L.GlobalAveragePooling2D()(L.BatchNormalization(name="bn")(L.Conv2D(3, 1)(inputs)))
    model = keras.Model(inputs, L.Dense(2, name="head")(h))
    out = thinet.rescale_next_layers(model, contributions.next_layers(model),
                                     {"bn": np.array([1.0, 0.5, 2.0])})
    old, new = model.get_layer("head").get_weights(), out.get_layer("head").get_weights()
    np.testing.assert_allclose(new[0], old[0] * np.array([[1.0], [0.5], [2.0]]))
    np.testing.assert_array_equal(new[1], old[1])
