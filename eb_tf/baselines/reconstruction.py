"""ThiNet's arithmetic (Luo et al., ICCV 2017), pure NumPy: which input channels of a layer
to remove so that its output changes least, and how to rescale the ones that stay.

A sample of the next layer's output is written as a sum over its input channels,
y_m = sum_c X[m, c], where X[m, c] is channel c's contribution to output entry m
(`eb_tf.baselines.contributions` collects X from a network). Removing the channel set R
changes entry m by sum_{c in R} X[m, c], so the reconstruction error of R is

    E(R) = sum_m (sum_{c in R} X[m, c])^2.

`greedy_removal` builds R one channel at a time, each time adding the channel that
keeps E smallest (the paper's Algorithm 1); `least_squares_scales` then fits one scale
w_c per kept channel, w = argmin sum_m (y_m - sum_{c in S} w_c X[m, c])^2 (the paper's
Eq. 7), which the next layer's kernel absorbs.

Example:

    from eb_tf.baselines import reconstruction
    removed = reconstruction.greedy_removal(X, 3)            # 3 channel indices
    keep = np.ones(X.shape[1], bool); keep[removed] = False
    scales = reconstruction.least_squares_scales(X, keep)    # 1.0 for removed channels
"""
from typing import List

import numpy as np

__all__ = ["reconstruction_error", "greedy_removal", "least_squares_scales"]


def _check_matrix(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not x.size or not np.all(np.isfinite(x)):
        raise ValueError(f"contributions of shape {x.shape} must be a finite 2-D array "
                         "(samples, channels) with at least one entry")
    return x


def reconstruction_error(x, removed) -> float:
    """E(R) = sum over samples of (sum of the removed channels' contributions)^2.

    Args:
      x: (samples, channels) contributions X.
      removed: channel indices R (any iterable of ints; empty gives 0).

    Example:
      >>> reconstruction_error([[1.0, -1.0, 2.0]], [0, 1])
      0.0
    """
    x = _check_matrix(x)
    idx = np.asarray(list(removed), dtype=np.int64)
    return float(np.sum(x[:, idx].sum(axis=1) ** 2)) if idx.size else 0.0


def greedy_removal(x, count: int) -> List[int]:
    """The `count` channels ThiNet removes: greedily, each keeping E(R) smallest.

    Each step adds the channel c minimising E(R + {c}) = |s|^2 + 2 s.X_c + |X_c|^2,
    s = sum_{j in R} X_j, so a step costs O(samples x channels); ties go to the lower
    index.

    Args:
      x: (samples, channels) contributions X.
      count: how many channels to remove, in [0, channels).

    Returns:
      The removed channel indices, in the order they were chosen.

    Raises:
      ValueError: count outside [0, channels) or a malformed x.

    Example:
      >>> greedy_removal([[0.1, 5.0, -0.1], [0.2, 4.0, -0.2]], 2)
      [0, 2]
    """
    x = _check_matrix(x)
    channels = x.shape[1]
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) \
            or not 0 <= count < channels:
        raise ValueError(f"count={count!r} must be an int in [0, {channels}): a layer keeps "
                         "at least one channel")
    norms = np.sum(x * x, axis=0)
    running = np.zeros(x.shape[0])
    free = np.ones(channels, dtype=bool)
    removed: List[int] = []
    for _ in range(int(count)):
        cost = 2.0 * (running @ x) + norms
        cost[~free] = np.inf
        best = int(np.argmin(cost))
        removed.append(best)
        free[best] = False
        running += x[:, best]
    return removed


def least_squares_scales(x, keep) -> np.ndarray:
    """One scale per channel: the least-squares fit of y = X.sum(1) by the kept channels.

    Kept channels get w = argmin |y - X_S w|^2 (NumPy `lstsq`); removed channels and
    kept ones whose contributions are all zero on the sample (nothing to fit) get 1.

    Args:
      x: (samples, channels) contributions X.
      keep: bool (channels,), True = kept.

    Returns:
      float32 (channels,) scales for the next layer's input channels.

    Raises:
      ValueError: keep of the wrong length, or keeping nothing.

    Example:
      >>> least_squares_scales([[1.0, 1.0], [2.0, 2.0]], [True, False])
      array([2., 1.], dtype=float32)
    """
    x = _check_matrix(x)
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (x.shape[1],) or not keep.any():
        raise ValueError(f"keep of shape {keep.shape} must be a bool vector of the "
                         f"{x.shape[1]} channels keeping at least one")
    y = x.sum(axis=1)
    fit = keep & np.any(x != 0.0, axis=0)
    scales = np.ones(x.shape[1])
    if fit.any():
        scales[fit] = np.linalg.lstsq(x[:, fit], y, rcond=None)[0]
    return scales.astype(np.float32)
