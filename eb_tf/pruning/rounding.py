"""`round_masks`: grow every pruned width to a multiple of 8 (or any `multiple`).

oneDNN and GPU kernels are much slower on odd channel counts (measured here: widths
31/61/123/246 step in 0.23-0.27 s vs 0.16 s at 32/64/128/256), so a ticket with
"random" widths can lose its speed-up. `round_masks` revives, in each channel space
(one producer, or an Add/Multiply group), the pruned channels with the largest |gamma|
until the space's physical width in `prune(model, masks)` is a multiple of `multiple`
(or the full width). A masked BN that reads only part of its space (a pre-activation
BN on a residual stream, which `prune` feeds through a `ChannelSelect` gather) is
rounded the same way within the channels the space keeps: oneDNN's fused batch norm
runs 4-15x slower on widths that are no multiple of 8 (fp32) or 16 (bf16) on an
AVX-512 Xeon (measured: 128x32x32x29 in 40 ms against 5 ms at 32 channels, fp32).

It only adds channels, so a `min_channels` the masks were drawn with still holds. It
never undoes a removal the masks make on purpose: a BN whose mask is all-False keeps
no channel (a residual branch stays the identity, a dead chain stays an error for
`prune`), and a space none of whose channels any layer needs (physically one channel,
the pruner's minimum) counts as width 0, a multiple of everything. Widths are the
physical ones of `prune`: a channel whose gamma is exactly 0 is a constant that `prune`
folds away whatever the mask says, so it is never revived; a space that cannot reach a
multiple for that reason is named in one warning.

Example:

    masks = eb_tf.channel_masks(model, 0.5)
    masks8 = eb_tf.round_masks(model, masks, multiple=8)
    small = eb_tf.prune(model, masks8)        # every conv width a multiple of 8
"""
import math
import warnings
from typing import Dict, List, Tuple, Union

import numpy as np

from eb_tf.compat import check_model
from eb_tf.pruning import plan as channel_plan
from eb_tf.sparsity import batchnorm

__all__ = ["round_masks", "space_widths", "check_multiple"]
_MAX_ROUNDS = 32


def space_widths(plan) -> Dict[Tuple[int, ...], Tuple[int, int]]:
    """{space (its identity roots): (physical width, full width)} over the producers."""
    out = {}
    for op, h in zip(plan.graph.ops, plan.handlers):
        if h.kind == "producer":
            roots = tuple(plan.roots(op.outputs[0]).tolist())
            out[roots] = (int(plan.phys[op.outputs[0]].size), len(roots))
    return out


def _readers(plan) -> Dict[int, List[Tuple[str, int]]]:
    """{identity root: [(BN mask key, channel)]} of the masked BNs reading it."""
    out = {}
    for op, h in zip(plan.graph.ops, plan.handlers):
        key = plan.bn_key.get(id(op.layer))
        if h.const == "bn" and h.kind == "unary" and key in plan.masks:
            for pos, root in enumerate(plan.roots(op.inputs[0]).tolist()):
                out.setdefault(root, []).append((key, pos))
    return out


def _needed(plan) -> np.ndarray:
    """Per channel identity: whether some tensor physically needs it (not only the
    channel the pruner keeps so that no space is empty)."""
    needed = np.zeros(plan.kept.size, bool)
    for t, r in plan.required.items():
        needed[plan.roots(t)[r]] = True
    return needed


def round_masks(model, masks: Dict[str, np.ndarray],
                multiple: Union[int, str] = 8) -> Dict[str, np.ndarray]:
    """Masks whose pruned widths are multiples of `multiple`, reviving top-|gamma| channels.

    Args:
      model: the dense model the masks belong to (functional or Sequential).
      masks: {BN key: bool array, True = keep}.
      multiple: the width granularity (an int >= 1), or "none" (the masks unchanged).
        Which multiple is fastest depends on the device and dtype: `eb_tf.round_masks`
        also takes "auto", which measures it (`eb_tf.pipeline.widths`).

    Returns:
      New masks (same keys, copies) keeping every channel the input masks keep, plus
      the revived ones. A space whose channels no BN mask controls (e.g. a conv feeding
      another conv directly), or that no layer needs at all, is left as it is, and an
      all-False mask stays all-False.

    Example:

        masks8 = eb_tf.round_masks(model, masks, multiple=8)
        assert all(m8[m].all() for m, m8 in zip(masks.values(), masks8.values()))

    Raises:
      ValueError: for `multiple` < 1 or not an int or "none", and whatever
        `eb_tf.prune` raises for the model or invalid masks. Masks that make the output
        a constant are returned as they are (rounding keeps them dead); `eb_tf.prune`
        refuses them.
    """
    where = "eb_tf.round_masks"
    check_model(model, where)
    if multiple == "none":
        return channel_plan.check_masks(model, masks, where)[0]
    check_multiple(multiple, where)
    plan = channel_plan.analyze(model, masks, where)
    out = {k: v.copy() for k, v in plan.masks.items()}
    score = {k: np.abs(v) for k, v in batchnorm.gammas(model, where=where).items()}
    tried = {(k, c) for k, m in out.items() if not m.any() for c in range(m.size)}
    for _ in range(_MAX_ROUNDS):
        readers, needed = _readers(plan), _needed(plan)
        flips = []
        for roots, (width, total) in space_widths(plan).items():
            target = min(total, math.ceil(width / multiple) * multiple)
            if target <= width or not needed[np.asarray(roots)].any():
                continue
            kept = plan.kept[np.asarray(roots)]
            candidates = []
            for pos in np.flatnonzero(~kept):
                options = [(score[k][c], k, c) for k, c in readers.get(roots[pos], [])
                           if not out[k][c] and (k, c) not in tried and score[k][c] > 0]
                if options:
                    candidates.append(max(options))
            candidates.sort(reverse=True)
            flips.extend(candidates[:target - width])
        flips.extend(_subset_flips(plan, out, score, tried, multiple))
        if not flips:
            break
        for _, key, channel in flips:
            out[key][channel] = True
            tried.add((key, channel))
        plan = channel_plan.analyze(model, out, where)
    short = _short_spaces(plan, multiple)
    if short:
        warnings.warn(f"{where}: {len(short)} channel space(s) cannot reach a multiple of "
                      f"{multiple}: {'; '.join(short[:8])}{' ...' if len(short) > 8 else ''}"
                      ". Their other channels have gamma exactly 0 (prune folds them away) "
                      "or no BN mask controls them.", stacklevel=2)
    return out


def _subset_flips(plan, out, score, tried, multiple) -> List[Tuple[float, str, int]]:
    """(|gamma|, BN key, channel) to revive so that each masked BN reading only part of
    its input's physical channels (a pre-activation BN: `prune` gathers what it keeps)
    reads a multiple of `multiple`, or all of them, which drops the gather."""
    flips = []
    for op, h in zip(plan.graph.ops, plan.handlers):
        key = plan.bn_key.get(id(op.layer))
        if not (h.const == "bn" and h.kind == "unary" and key in out and out[key].any()):
            continue
        reads, present = plan.p_in[(op.index, 0)], plan.phys[op.inputs[0]]
        target = min(present.size, math.ceil(reads.size / multiple) * multiple)
        if target <= reads.size:
            continue
        options = sorted(((score[key][c], key, int(c)) for c in np.setdiff1d(present, reads)
                          if not out[key][c] and (key, int(c)) not in tried
                          and score[key][c] > 0), reverse=True)
        flips.extend(options[:target - reads.size])
    return flips


def check_multiple(multiple, where: str) -> None:
    """Raises a ValueError naming `multiple` unless it is an int >= 1."""
    if isinstance(multiple, bool) or not isinstance(multiple, (int, np.integer)) or multiple < 1:
        raise ValueError(f"{where}: multiple must be an int >= 1 or 'none', got {multiple!r}")


def _short_spaces(plan, multiple) -> List[str]:
    """'producer (width of total)' of the needed spaces whose width is no multiple."""
    needed, names = _needed(plan), {}
    for op, h in zip(plan.graph.ops, plan.handlers):
        if h.kind == "producer":
            roots = tuple(plan.roots(op.outputs[0]).tolist())
            names.setdefault(roots, []).append("/".join(op.path + (op.layer.name,)))
    out = []
    for roots, (width, total) in space_widths(plan).items():
        if width % multiple and width < total and needed[np.asarray(roots)].any():
            out.append(f"{'+'.join(repr(n) for n in names[roots])} ({width} of {total})")
    return out
