"""Tests for eb_tf.sparsity.masks: drawing masks from gammas and the distance between masks."""
import math
import pathlib
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eb_tf.sparsity import masks

# Few distinct magnitudes (and both signs) so that ties are common.
_values = st.sampled_from([-2.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0, 2.0, 3.0])
_layer = st.lists(_values, min_size=1, max_size=12).map(lambda v: np.array(v, np.float32))
_gammas = st.lists(_layer, min_size=1, max_size=5).map(
    lambda layers: {f"bn{i}": g for i, g in enumerate(layers)})
_ratios = st.fractions(Fraction(1, 100), Fraction(99, 100)).map(float)
_flat_pair = st.integers(1, 40).flatmap(
    lambda n: st.tuples(*[st.lists(st.booleans(), min_size=n, max_size=n)
                          .map(lambda v: np.array(v, bool))] * 3))


def _reference(gammas, ratio, min_channels):
    """Independent pure-Python version of the global rule: sort tuples, prune k, give back."""
    items = [(abs(float(v)), li, i) for li, g in enumerate(gammas.values())
             for i, v in enumerate(g)]
    k = math.floor(Fraction(str(ratio)).limit_denominator(10**6) * len(items))
    keep = {key: [True] * len(g) for key, g in gammas.items()}
    keys = list(gammas)
    for _, li, i in sorted(items)[:k]:
        keep[keys[li]][i] = False
    for key, g in gammas.items():
        want = min(min_channels, len(g))
        back = sorted((i for i, kept in enumerate(keep[key]) if not kept),
                      key=lambda i: (abs(float(g[i])), i), reverse=True)
        for i in back[:max(0, want - sum(keep[key]))]:
            keep[key][i] = True
    return keep


@given(_gammas, _ratios, st.integers(0, 3))
def test_global_masks_match_the_reference_rule(gammas, ratio, min_channels):
    got = masks.masks_from_gammas(gammas, ratio, min_channels=min_channels)
    want = _reference(gammas, ratio, min_channels)
    assert list(got) == list(gammas)
    assert {k: v.tolist() for k, v in got.items()} == want
    assert all(v.dtype == np.bool_ and v.shape == gammas[k].shape for k, v in got.items())


@given(_gammas, _ratios)
def test_exactly_floor_p_n_channels_are_pruned_without_min_channels(gammas, ratio):
    got = masks.masks_from_gammas(gammas, ratio, min_channels=0)
    n = sum(g.size for g in gammas.values())
    pruned = sum(int((~m).sum()) for m in got.values())
    assert pruned == masks.num_pruned(n, ratio) == math.floor(round(ratio * n, 9))
    kept_abs = np.concatenate([np.abs(g[m]) for g, m in zip(gammas.values(), got.values())])
    pruned_abs = np.concatenate([np.abs(g[~m]) for g, m in zip(gammas.values(), got.values())])
    if kept_abs.size and pruned_abs.size:
        assert pruned_abs.max() <= kept_abs.min()  # one global threshold


@given(_gammas, _ratios, st.integers(1, 4), st.sampled_from(masks.SCOPES))
def test_min_channels_only_gives_back_channels(gammas, ratio, min_channels, scope):
    free = masks.masks_from_gammas(gammas, ratio, scope, min_channels=0)
    got = masks.masks_from_gammas(gammas, ratio, scope, min_channels=min_channels)
    for key, m in got.items():
        assert np.all(m[free[key]])  # never prunes a channel the plain rule keeps
        assert m.sum() == max(int(free[key].sum()), min(min_channels, m.size))
    n = sum(g.size for g in gammas.values())
    assert sum(int((~m).sum()) for m in got.values()) <= masks.num_pruned(n, ratio)


@given(_gammas, _ratios)
def test_layer_scope_prunes_the_ratio_within_each_layer(gammas, ratio):
    got = masks.masks_from_gammas(gammas, ratio, scope="layer", min_channels=0)
    for key, g in gammas.items():
        m = got[key]
        assert int((~m).sum()) == masks.num_pruned(g.size, ratio)
        if m.any() and (~m).any():
            assert np.abs(g[~m]).max() <= np.abs(g[m]).min()


@given(_gammas, st.lists(_ratios, min_size=1, max_size=3, unique=True),
       st.sampled_from(masks.SCOPES))
def test_draw_masks_equals_one_call_per_ratio(gammas, ratios, scope):
    got = masks.draw_masks(gammas, ratios, scope)
    assert list(got) == ratios
    for ratio in ratios:
        one = masks.masks_from_gammas(gammas, ratio, scope)
        assert {k: v.tolist() for k, v in got[ratio].items()} == \
            {k: v.tolist() for k, v in one.items()}


def test_ties_go_by_layer_order_then_index():
    gammas = {"a": np.array([1.0, 1.0, 1.0]), "b": np.array([1.0, -1.0, 0.5])}
    got = masks.masks_from_gammas(gammas, 0.5, min_channels=0)  # k = 3: 0.5 then two ties
    assert got["a"].tolist() == [False, False, True]
    assert got["b"].tolist() == [True, True, False]
    got = masks.masks_from_gammas(gammas, 0.5, scope="layer", min_channels=0)  # 1 per layer
    assert got["a"].tolist() == [False, True, True]
    assert got["b"].tolist() == [True, True, False]


def test_min_channels_gives_a_starved_layer_its_largest_gammas():
    gammas = {"big": np.array([5.0, 6.0, 7.0, 8.0]), "tiny": np.array([0.3, -0.2, 0.1])}
    got = masks.masks_from_gammas(gammas, 0.5, min_channels=2)
    assert got["tiny"].tolist() == [True, True, False]
    assert got["big"].all()


def test_num_pruned_is_robust_to_float_noise():
    assert masks.num_pruned(100, 0.29) == 29  # 0.29 * 100 == 28.999999999999996
    assert masks.num_pruned(10, 0.7) == 7
    assert masks.num_pruned(3, 0.5) == 1


def test_exclude_drops_layers_by_name_or_pattern():
    gammas = {"a/bn1": np.array([0.1, 0.2]), "b/bn1": np.array([0.0, 0.3]),
              "fc_bn": np.array([1.0, 2.0])}
    got = masks.masks_from_gammas(gammas, 0.5, exclude=["*/bn1"])
    assert list(got) == ["fc_bn"] and got["fc_bn"].tolist() == [False, True]
    got = masks.masks_from_gammas(gammas, 0.5, exclude="fc_bn", min_channels=0)
    assert got["a/bn1"].tolist() == [False, True] and got["b/bn1"].tolist() == [False, True]
    with pytest.raises(ValueError, match=r"exclude entry 'bn9' matches no BN layer"):
        masks.masks_from_gammas(gammas, 0.5, exclude=["bn9"])


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, float("nan"), "half", None])
def test_bad_ratio_is_rejected_with_range(ratio):
    with pytest.raises(ValueError, match=r"ratio must be .*\(0, 1\)"):
        masks.masks_from_gammas({"a": np.ones(3)}, ratio)


@pytest.mark.parametrize("kwargs, message", [
    ({"scope": "model"}, r"scope must be one of \('global', 'layer'\), got 'model'"),
    ({"min_channels": -1}, r"min_channels must be an int >= 0, got -1"),
    ({"min_channels": 1.5}, r"min_channels must be an int >= 0, got 1.5"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        masks.masks_from_gammas({"a": np.ones(3)}, 0.5, **kwargs)


@pytest.mark.parametrize("gammas, message", [
    ({}, r"gammas must be a non-empty dict"),
    ({"a": np.ones((2, 2))}, r"gammas\['a'\] must be a non-empty 1-D array, got shape \(2, 2\)"),
    ({"a": np.array([1.0, np.nan])}, r"gammas\['a'\] holds NaN/inf"),
])
def test_bad_gammas_are_rejected(gammas, message):
    with pytest.raises(ValueError, match=message):
        masks.masks_from_gammas(gammas, 0.5)


@given(_flat_pair)
def test_distance_is_a_normalised_hamming_metric(triple):
    a, b, c = triple
    d_ab = masks.mask_distance(a, b)
    assert 0.0 <= d_ab <= 1.0
    assert d_ab == masks.mask_distance(b, a) == np.mean(a != b)
    assert (d_ab == 0.0) == bool(np.array_equal(a, b))
    assert masks.mask_distance(a, c) <= d_ab + masks.mask_distance(b, c) + 1e-12


@given(_flat_pair)
def test_dict_distance_equals_flat_distance_and_ignores_key_order(triple):
    a, b, _ = triple
    cut = len(a) // 2
    da, db = {"x": a[:cut], "y": a[cut:]}, {"y": b[cut:], "x": b[:cut]}
    assert masks.mask_distance(da, db) == masks.mask_distance(a, b)


@given(_flat_pair)
def test_distance_matrix_holds_the_pairwise_distances(triple):
    mat = masks.distance_matrix(list(triple))
    assert mat.shape == (3, 3) and np.array_equal(mat, mat.T) and not np.diag(mat).any()
    for i in range(3):
        for j in range(3):
            assert mat[i, j] == pytest.approx(masks.mask_distance(triple[i], triple[j]), abs=0)


def test_distance_matrix_of_dict_masks():
    ms = [{"a": np.array([1, 1]), "b": np.array([0, 1, 1])},
          {"a": np.array([1, 0]), "b": np.array([0, 1, 1])},
          {"b": np.array([1, 0, 0]), "a": np.array([0, 0])}]
    np.testing.assert_array_equal(masks.distance_matrix(ms),
                                  [[0, 0.2, 1.0], [0.2, 0, 0.8], [1.0, 0.8, 0]])


@pytest.mark.parametrize("a, b, message", [
    ({"x": [1, 0]}, {"y": [1, 0]}, r"different BN layers: only in a: \['x'\], only in b: \['y'\]"),
    ({"x": [1, 0]}, {"x": [1, 0, 1]}, r"mask\['x'\] has 2 channels in a but 3 in b"),
    ([1, 0], [1, 0, 1], r"different lengths: 2 and 3"),
    ({"x": [1, 0]}, [1, 0], r"two dicts or two flat arrays, got dict and list"),
    ({"x": [1, 2]}, {"x": [1, 0]}, r"a\['x'\]: all entries must be 0/1 or bool"),
    ({"x": [[1, 0]]}, {"x": [1, 0]}, r"a\['x'\] must be a 1-D array"),
    ({}, {}, r"a must be a non-empty dict"),
])
def test_mismatched_masks_are_rejected(a, b, message):
    with pytest.raises(ValueError, match=message):
        masks.mask_distance(a, b)
    with pytest.raises(ValueError):
        masks.distance_matrix([a, b])


def test_flatten_and_validate_mask():
    m = masks.validate_mask({"a": [1, 0], "b": np.array([True])})
    assert all(v.dtype == np.bool_ for v in m.values())
    assert masks.flatten_mask(m).tolist() == [True, False, True]
    with pytest.raises(ValueError, match=r"keys must be BN layer names \(str\), got 3"):
        masks.validate_mask({3: [1]})


def test_masks_module_imports_no_tensorflow():
    path = pathlib.Path(__file__).resolve().parents[2] / "eb_tf" / "sparsity" / "masks.py"
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('m', {str(path)!r})\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "assert 'tensorflow' not in sys.modules, 'masks.py imported TensorFlow'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
