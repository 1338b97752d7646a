"""Channel masks from BatchNorm gammas, and the distance between masks (pure NumPy).

A mask is a `Dict[str, np.ndarray]` of 1-D bool arrays keyed by BN layer (mask key,
see `eb_tf.sparsity.batchnorm.bn_layers`), True = keep the channel. Network slimming scores a
channel by |gamma| of its BN layer; the Early-Bird ticket for pruning ratio p prunes
the p smallest of them.

Example:

    from eb_tf.sparsity import masks
    g = {"bn1": np.array([0.9, 0.01, 0.5]), "bn2": np.array([0.02, 0.3])}
    m = masks.masks_from_gammas(g, 0.4)      # prunes floor(0.4 * 5) = 2 channels
    # {"bn1": [True, False, True], "bn2": [False, True]}
    masks.mask_distance(m, m)                # 0.0

No TensorFlow here: this module is the math, `eb_tf.sparsity.batchnorm.channel_masks` reads the
gammas off a model.
"""
import fnmatch
import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = ["masks_from_gammas", "draw_masks", "mask_distance", "distance_matrix", "num_pruned",
           "check_ratio", "validate_mask", "flatten_mask", "select_keys"]

Mask = Dict[str, np.ndarray]
SCOPES = ("global", "layer")


def check_ratio(ratio, name: str = "ratio") -> float:
    """Returns `ratio` as a float after checking it lies in the open interval (0, 1)."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {ratio!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1) (the fraction of channels to prune), "
                         f"got {ratio!r}")
    return value


def num_pruned(num_channels: int, ratio: float) -> int:
    """k = floor(ratio * num_channels), robust to float noise (0.29 * 100 -> 29, not 28)."""
    return int(math.floor(round(check_ratio(ratio) * num_channels, 9)))


def validate_mask(mask, name: str = "mask") -> Mask:
    """Checks a mask and returns it as {key: 1-D bool array} (a new dict, same order).

    Accepts bool arrays or integer arrays holding only 0 and 1.

    Raises:
      ValueError: if `mask` is not a non-empty dict of 1-D arrays of 0/1 entries with
        string keys; the message names the offending key.
    """
    if not isinstance(mask, Mapping) or not mask:
        raise ValueError(f"{name} must be a non-empty dict {{BN layer name: 1-D bool array}}, "
                         f"got {type(mask).__name__}{'' if mask else ' (empty)'}")
    out = {}
    for key, value in mask.items():
        if not isinstance(key, str):
            raise ValueError(f"{name} keys must be BN layer names (str), got {key!r}")
        out[key] = _as_bool_vector(value, f"{name}[{key!r}]")
    return out


def _as_bool_vector(value, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array (one entry per channel), got shape "
                         f"{arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iuf" and np.all((arr == 0) | (arr == 1)):
        return arr.astype(bool)
    raise ValueError(f"{name}: all entries must be 0/1 or bool, got dtype {arr.dtype}")


def flatten_mask(mask) -> np.ndarray:
    """A mask dict (in its key order) or a flat array as one 1-D bool array."""
    if isinstance(mask, Mapping):
        return np.concatenate(list(validate_mask(mask).values()))
    return _as_bool_vector(mask, "mask")


def select_keys(keys: Sequence[str], exclude: Optional[Iterable[str]]) -> List[str]:
    """`keys` minus those matching `exclude` (exact names or fnmatch patterns like "*/bn1").

    Raises:
      ValueError: if an `exclude` entry matches no key (a typo would silently prune).
    """
    if exclude is None:
        return list(keys)
    if isinstance(exclude, str):
        exclude = [exclude]
    dropped = set()
    for pattern in exclude:
        hits = [k for k in keys if k == pattern or fnmatch.fnmatchcase(k, pattern)]
        if not hits:
            raise ValueError(f"exclude entry {pattern!r} matches no BN layer; the candidates "
                             f"are {list(keys)}")
        dropped.update(hits)
    return [k for k in keys if k not in dropped]


def masks_from_gammas(gammas: Mapping[str, np.ndarray], ratio: float, scope: str = "global",
                      min_channels: int = 1,
                      exclude: Optional[Iterable[str]] = None) -> Mask:
    """Draws the channel mask that prunes the fraction `ratio` of smallest |gamma|.

    Exactly k = floor(ratio * N) channels are pruned (N = all channels in scope); ties
    go by (|gamma|, layer order, channel index), so the result is deterministic. Then
    every layer left with fewer than `min_channels` channels gets its largest-|gamma|
    channels back (so slightly fewer than k may be pruned): in both scopes and at any
    ratio, every layer keeps at least min(min_channels, its size) channels.

    With `min_channels=0` a layer may lose every channel (an all-False mask); where
    that makes a model's output a constant, `eb_tf.prune` refuses the mask (naming
    the layer), and where a residual skip carries on it prunes the branch away. A mask
    is per layer: BNs linked only by per-channel layers (BN - ReLU - depthwise - BN)
    may each keep channels and still keep none in common; `prune` checks that too.

    Args:
      gammas: {BN key: 1-D array of gammas}, in layer order (`eb_tf.gammas(model)`).
      ratio: pruning ratio p in (0, 1).
      scope: "global" (one threshold over all layers, the paper) or "layer" (prune
        floor(p * n) within each layer).
      min_channels: keep at least this many channels per layer (>= 0; a layer with
        fewer keeps all of them).
      exclude: BN keys or fnmatch patterns to leave out; they are not in the result
        and do not count towards N.

    Returns:
      {key: 1-D bool array}, True = keep, in the order of `gammas`.

    Example:
      >>> m = masks_from_gammas({"a": np.array([3., 1.]), "b": np.array([2., 0.])}, 0.5)
      >>> {k: v.tolist() for k, v in m.items()}
      {'a': [True, False], 'b': [True, False]}
    """
    ratio = check_ratio(ratio)
    return draw_masks(gammas, (ratio,), scope, min_channels, exclude)[ratio]


def draw_masks(gammas: Mapping[str, np.ndarray], ratios: Sequence[float],
               scope: str = "global", min_channels: int = 1,
               exclude: Optional[Iterable[str]] = None) -> Dict[float, Mask]:
    """`masks_from_gammas` for several ratios at once, sorting |gamma| only once.

    Returns:
      {ratio (as float): mask}.
    """
    ratios = [check_ratio(r) for r in ratios]
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if isinstance(min_channels, bool) or not isinstance(min_channels, (int, np.integer)) \
            or min_channels < 0:
        raise ValueError(f"min_channels must be an int >= 0, got {min_channels!r}")
    if not isinstance(gammas, Mapping) or not gammas:
        raise ValueError("gammas must be a non-empty dict {BN layer name: 1-D array}, got "
                         f"{type(gammas).__name__}")
    keys = select_keys(list(gammas), exclude)
    if not keys:
        raise ValueError(f"exclude={exclude!r} leaves no BN layer to prune")
    arrays = [np.asarray(gammas[key]) for key in keys]
    for key, g in zip(keys, arrays):
        if g.ndim != 1 or g.size == 0:
            raise ValueError(f"gammas[{key!r}] must be a non-empty 1-D array, got shape {g.shape}")
    flat = np.abs(np.concatenate(arrays).astype(np.float64, copy=False))
    sizes = np.array([g.size for g in arrays])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if not np.isfinite(flat).all():
        bad = [k for k, g in zip(keys, arrays) if not np.isfinite(g).all()]
        raise ValueError(f"gammas[{bad[0]!r}] holds NaN/inf; training diverged (lower the "
                         "learning rate or the L1 strength)")
    layer_of = np.repeat(np.arange(len(keys)), sizes)
    if scope == "global":
        # A stable sort of the concatenation orders ties by (layer order, index).
        order = np.argsort(flat, kind="stable")
    else:
        # By layer, then |gamma|, then index (lexsort is stable); rank within the layer.
        order = np.lexsort((flat, layer_of))
        rank = np.empty(flat.size, dtype=np.int64)
        rank[order] = np.arange(flat.size) - starts[layer_of[order]]
    floor_count = np.minimum(int(min_channels), sizes)
    out = {}
    for ratio in ratios:
        if scope == "global":
            keep = np.ones(flat.size, dtype=bool)
            keep[order[:num_pruned(flat.size, ratio)]] = False
        else:
            per_layer = np.floor(np.round(ratio * sizes, 9)).astype(np.int64)
            keep = rank >= per_layer[layer_of]
        for layer in np.flatnonzero(np.add.reduceat(keep, starts) < floor_count):
            span = slice(starts[layer], starts[layer] + sizes[layer])
            _give_back(keep[span], flat[span], int(floor_count[layer]))
        out[ratio] = dict(zip(keys, np.split(keep, starts[1:])))
    return out


def _give_back(keep: np.ndarray, score: np.ndarray, floor_count: int) -> None:
    """Re-keeps the largest-|gamma| pruned channels of a layer until it has floor_count."""
    missing = floor_count - int(keep.sum())
    if missing <= 0:
        return
    pruned = np.flatnonzero(~keep)
    # Largest |gamma| first; among equals the later index (the tie order, reversed).
    best = pruned[np.argsort(score[pruned], kind="stable")[::-1][:missing]]
    keep[best] = True


def _check_compatible(a, b):
    """Validates two masks of the same layout; returns them as bool dicts / bool vectors."""
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise ValueError("masks must be two dicts or two flat arrays, got "
                         f"{type(a).__name__} and {type(b).__name__}")
    if not isinstance(a, Mapping):
        a, b = _as_bool_vector(a, "a"), _as_bool_vector(b, "b")
        if a.shape != b.shape:
            raise ValueError(f"masks have different lengths: {a.size} and {b.size}")
        return a, b
    a, b = validate_mask(a, "a"), validate_mask(b, "b")
    if a.keys() != b.keys():
        raise ValueError(f"masks have different BN layers: only in a: "
                         f"{sorted(a.keys() - b.keys())}, only in b: "
                         f"{sorted(b.keys() - a.keys())}")
    for key in a:
        if a[key].shape != b[key].shape:
            raise ValueError(f"mask[{key!r}] has {a[key].size} channels in a but "
                             f"{b[key].size} in b")
    return a, b


def mask_distance(a: Union[Mask, np.ndarray], b: Union[Mask, np.ndarray]) -> float:
    """Normalised Hamming distance in [0, 1]: the fraction of channels whose keep/prune differs.

    Args:
      a, b: two masks, both dicts with the same keys and per-key lengths, or both flat
        1-D arrays of the same length.

    Example:
      >>> mask_distance(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
      0.25
    """
    a, b = _check_compatible(a, b)
    if isinstance(a, Mapping):
        fa = np.concatenate(list(a.values()))
        fb = np.concatenate([b[k] for k in a])
    else:
        fa, fb = a, b
    if fa.size == 0:
        raise ValueError("masks are empty (0 channels)")
    return float(np.count_nonzero(fa != fb)) / fa.size


def distance_matrix(masks_list: Sequence[Union[Mask, np.ndarray]]) -> np.ndarray:
    """The symmetric matrix of pairwise `mask_distance`s (the paper's Fig. 3).

    Args:
      masks_list: masks (all dicts with the same keys and lengths, or all flat arrays),
        e.g. one per epoch.

    Returns:
      float64 array of shape (n, n), zero diagonal.

    Example:
      >>> distance_matrix([np.array([1, 0]), np.array([0, 0])]).tolist()
      [[0.0, 0.5], [0.5, 0.0]]
    """
    if len(masks_list) == 0:
        raise ValueError("distance_matrix needs at least one mask, got an empty list")
    first = masks_list[0]
    for m in masks_list[1:]:
        _check_compatible(first, m)
    if isinstance(first, Mapping):
        keys = list(first)
        flat = np.stack([np.concatenate([validate_mask(m)[k] for k in keys])
                         for m in masks_list]).astype(np.float64)
    else:
        flat = np.stack([_as_bool_vector(m, "mask") for m in masks_list]).astype(np.float64)
    if flat.shape[1] == 0:
        raise ValueError("masks are empty (0 channels)")
    # Hamming(x, y) = |x| + |y| - 2 x.y, exact in float64 for any realistic N.
    ones = flat.sum(axis=1)
    diff = ones[:, None] + ones[None, :] - 2.0 * (flat @ flat.T)
    out = diff / flat.shape[1]
    np.fill_diagonal(out, 0.0)
    return out
