"""Hardware-aware ticket widths: the width multiple whose ticket trains fastest here.

A drawn ticket's odd channel counts can make it train no faster than the dense net, or
slower: measured on an Intel Xeon (AVX-512, AMX), VGG-16 width 0.5 at p = 0.5 stepped
at 0.50x dense in fp32 whatever the rounding, but in mixed_bfloat16 at 1.9x dense as
drawn, 3.6x rounded to multiples of 8 and 0.91x rounded to 16; an AMD EPYC liked 8.
So the multiple is measured, not assumed: `choose_multiple` rounds the masks to each
candidate multiple (1 = the exact mask, 8, 16, 32), prunes, and times one SGD step of
each ticket (`eb_tf.pipeline.step_timing`) in interleaved rounds on this device, in the
dtype policy and at the batch size of the run, together with the ticket of per-space
multiples that a per-layer latency table predicts fastest (candidate `LAYER`,
`eb_tf.pipeline.layer_widths`); the fastest median wins, and a ticket within `TIE` of
it with fewer FLOPs wins over it. Only tickets with at most `MAX_FLOPS_GROWTH` (1.25)
times the exact ticket's FLOPs are eligible (`max_flops_growth`; None: any), so that a
p = 0.5 ticket stays one: rounding VGG-16 width 0.5 to x16 keeps 1.34x the exact
FLOPs; the per-layer search then spends the allowed FLOPs where they save the most time
(preresnet56, fp32, batch 128, on an AMD EPYC: x8, x16 and x32 over the limit, the
per-layer ticket at 1.25x stepped at 1039 ms against x8's 1150 and the exact 1791).
The table is cached per (CPU model and flags or GPU name, TensorFlow version, policy,
batch, model, candidate widths, limit), so a second draw of the same ticket here
measures nothing; `round_masks` is
`eb_tf.round_masks` with `multiple="auto"` as its default.

The measurement costs what it may save only in a long retrain: a draw gives it a
`budget_seconds` of `BUDGET_FRACTION` of the ticket's predicted retrain (`for_run`).
The rounds shrink to fit it; when not even tracing every candidate fits (a retrain of a
few seconds), nothing is measured and the choice falls back to the prior: the
multiple measured fastest most recently on this device, policy and batch for any
model (`source: "prior"`). With no prior yet the candidates are measured for one
round (the cheapest measurement, and the prior of later draws: 11 s on busy cores for
VGG-16 width 0.25 at batch 128, against 14 s for five rounds); the exact mask, the only
unmeasured alternative, stepped at 1.45x the dense net here where the x8 ticket took 0.83x.

Example:

    choice = widths.choose_multiple(model, masks, batch_size=128, policy="mixed_bfloat16")
    choice.multiple, choice.median_ms         # e.g. 16, {1: 184.0, 8: 127.3, 16: 42.1, 32: 44.0}
    masks, choice = widths.for_run(cfg, model, masks)        # what a draw does
    ticket = bn_kernel.unfuse(eb_tf.prune(model, masks), choice.unfused)
"""
import hashlib
import json
import os
import time
import warnings
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from eb_tf import io_utils
from eb_tf.compat import check_model, tf
from eb_tf.data import cache
from eb_tf.pipeline import layer_widths, step_timing
from eb_tf.pipeline.device import device_descriptor, has_bf16
from eb_tf.pipeline.width_choice import (LAYER, MAX_FLOPS_GROWTH, TIE, WidthChoice, allowed,
                                         candidate, check_flops_growth, pick)
from eb_tf.pruning import bn_kernel
from eb_tf.pruning import flops as flops_lib
from eb_tf.pruning import rounding
from eb_tf.pruning.pruner import prune
from eb_tf.quantization.modes import POLICIES

__all__ = ["CANDIDATES", "LAYER", "TIE", "BUDGET_FRACTION", "LAYER_SHARE", "MAX_FLOPS_GROWTH",
           "WidthChoice", "device_descriptor", "has_bf16", "choose_multiple", "round_masks",
           "check_round_multiple", "check_flops_growth", "for_run", "retrain_budget"]

CANDIDATES = (1, 8, 16, 32)
BUDGET_FRACTION = 0.05  # a draw measures for at most 5% of the retrain it speeds up
LAYER_SHARE = 0.4      # of a budget, what the per-layer latency table may take


def check_round_multiple(value, where: str = "round_multiple") -> Union[int, str]:
    """`value` as "auto", "none" or an int >= 1; a ValueError names it otherwise."""
    if value in ("auto", "none"):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: multiple must be 'auto', 'none' or an int >= 1, got "
                         f"{value!r}")
    return int(value)


def _key(model, widths, policy, batch_size, device, per_layer, growth) -> str:
    spec = {"device": device, "tf": tf.__version__, "policy": policy, "batch": batch_size,
            "model": hashlib.sha256(model.to_json().encode()).hexdigest(),
            "widths": {str(m): w for m, w in widths.items()}, "per_layer": per_layer}
    if growth is not None:                 # absent: the keys of tables before the limit
        spec["max_flops_growth"] = float(growth)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def _rounded(model, masks, candidates):
    """{candidate: (rounded masks, the warnings rounding gave)}, equal widths once."""
    out, seen = {}, set()
    for m in candidates:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rounded = rounding.round_masks(model, masks, "none" if m == 1 else m)
        widths = tuple(int(v.sum()) for v in rounded.values())
        if widths not in seen:
            seen.add(widths)
            out[m] = (rounded, caught)
    return out


def _same_widths(model, masks, multiple, rounded) -> int:
    """The candidate of `rounded` that rounding to `multiple` gives (candidates of equal
    widths are kept once, the smallest); `multiple` itself, added, if none does."""
    extra = _rounded(model, masks, [multiple])[multiple]
    widths = [int(v.sum()) for v in extra[0].values()]
    for m, (r, _) in rounded.items():
        if [int(v.sum()) for v in r.values()] == widths:
            return m
    rounded[multiple] = extra
    return multiple


def _pruned(model, rounded) -> dict:
    """{candidate: its ticket}: pruned only when something is measured or counted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # barriers: prune says it at the draw
        return {m: prune(model, r) for m, (r, _) in rounded.items()}


def _prior(folder, device, policy, batch_size) -> Optional[tuple]:
    """(multiple, trace seconds or None) of the latest table measured on this device,
    policy and batch; None when there is none."""
    tables = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                table = json.load(f)
        except (OSError, ValueError):
            continue
        if (table.get("device"), table.get("policy"), table.get("batch_size"),
                table.get("source", "measured")) == (device, policy, batch_size, "measured"):
            tables.append((os.path.getmtime(path), name, _fastest_uniform(table),
                           table.get("trace_seconds")))
    return max(tables)[2:] if tables else None


def _fastest_uniform(table) -> int:
    """The fastest uniform multiple of a stored table, from its rounds (the limit it was
    chosen under aside), else as it was recorded."""
    ms = {candidate(k): v for k, v in table.get("ms_rounds", {}).items() if k != LAYER}
    flops = {candidate(k): v for k, v in table.get("flops", {}).items()}
    if ms and set(ms) <= set(flops):
        return int(pick(ms, flops))
    return int(table.get("uniform_multiple", table["multiple"]))


def choose_multiple(model, masks, batch_size: Optional[int] = None,
                    policy: Optional[str] = None, cache_dir: Optional[str] = None,
                    candidates: Sequence[int] = CANDIDATES, rounds: int = 5, steps: int = 3,
                    warmup: int = 2, budget_seconds: Optional[float] = None,
                    per_layer: bool = True,
                    max_flops_growth: Optional[float] = MAX_FLOPS_GROWTH) -> WidthChoice:
    """Measures which width multiple makes the ticket of `masks` train fastest here.

    Args:
      model: the dense float32 model the masks belong to.
      masks: {BN key: bool array}, as drawn.
      batch_size: the training batch (None: 128).
      policy: the dtype policy the ticket trains in (None: the global policy).
      cache_dir: where measured tables are kept (None: `<eb_tf cache>/widths`).
      candidates: the multiples to try (1 = the exact mask).
      rounds, steps, warmup: interleaved rounds, timed steps per round (at least; a
        round lasts >= `step_timing.ROUND_SECONDS`), untimed steps after the trace.
      budget_seconds: at most this long measuring (None: no limit); over it, the prior
        (see the module docstring), which is not cached.
      per_layer: also time the ticket of per-space multiples that the per-layer latency
        table predicts fastest (`eb_tf.pipeline.layer_widths`; candidate `LAYER`). With a
        budget, the table may take `LAYER_SHARE` of it, else that candidate is left out.
      max_flops_growth: only tickets with at most this many times the exact ticket's
        FLOPs may be chosen (the exact one always may), and the per-layer search stays
        within it; None: any. Ruled-out candidates are still measured and reported
        (`WidthChoice.over_limit`).

    Returns:
      A `WidthChoice`; from the cache when this exact table was measured before.

    Raises:
      ValueError: a bad candidate or count, and what `eb_tf.prune` raises.
    """
    return _choose(model, masks, batch_size, policy, cache_dir, candidates, rounds, steps,
                   warmup, budget_seconds, per_layer, max_flops_growth)[0]


def _choose(model, masks, batch_size=None, policy=None, cache_dir=None,
            candidates=CANDIDATES, rounds=5, steps=3, warmup=2, budget=None, per_layer=True,
            growth=MAX_FLOPS_GROWTH):
    """(`choose_multiple`'s choice, {candidate: (rounded masks, rounding's warnings)})."""
    where = "eb_tf.pipeline.widths.choose_multiple"
    k = check_model(model, where)
    for m in candidates:
        rounding.check_multiple(m, where)
    for name, value in (("rounds", rounds), ("steps", steps), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: {name}={value!r} must be an int >= 1")
    growth = check_flops_growth(growth, where)
    batch_size = 128 if batch_size is None else int(batch_size)
    policy = policy or k.mixed_precision.global_policy().name
    device = device_descriptor()
    rounded = _rounded(model, masks, sorted(set(candidates)))
    widths = {m: [int(v.sum()) for v in r.values()] for m, (r, _) in rounded.items()}
    folder = cache_dir or cache.cache_path("widths")
    path = os.path.join(folder, _key(model, widths, policy, batch_size, device, per_layer,
                                     growth) + ".json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
        ms = {candidate(k): v for k, v in table["ms_rounds"].items()}
        layer = table.get("layer")
        if LAYER in ms:                             # the same per-space widths again
            rounded[LAYER] = (layer_widths.compose(
                model, {m: r for m, (r, _) in rounded.items()}, layer["assignment"]), [])
        flops = ({candidate(k): v for k, v in table["flops"].items()} if "flops" in table
                 else {m: int(flops_lib.count_flops(t).total)
                       for m, t in _pruned(model, rounded).items()})
        return (WidthChoice(pick(ms, flops, growth), ms, flops, device, policy, batch_size,
                            True, layer=layer, max_flops_growth=growth), rounded)
    start = time.perf_counter()
    prior = _prior(folder, device, policy, batch_size) if budget is not None else None
    if prior is not None and prior[1] is not None and prior[1] * len(rounded) > budget:
        return _from_prior(model, masks, prior[0], rounded, device, policy, batch_size,
                           start, budget, growth), rounded  # tracing would not fit
    tickets = _pruned(model, rounded)
    counted = {m: flops_lib.count_flops(t) for m, t in tickets.items()}
    layer = _layer_candidate(model, rounded, batch_size, policy, folder, device, start,
                             budget, growth, counted) \
        if per_layer and 1 in rounded and len(rounded) > 1 else None
    if LAYER in rounded:
        tickets[LAYER] = bn_kernel.unfuse(_pruned(model, {LAYER: rounded[LAYER]})[LAYER],
                                          layer.get("unfused", ()))
        counted[LAYER] = flops_lib.count_flops(tickets[LAYER])
    flops = {m: int(c.total) for m, c in counted.items()}
    stats = {}
    left = None if budget is None else budget - (time.perf_counter() - start)
    ms = step_timing.time_rounds(tickets, policy, batch_size, rounds, steps, warmup, left, stats)
    if ms is None:                              # over budget: the prior, not cached
        if prior is not None:
            return _from_prior(model, masks, prior[0], rounded, device, policy, batch_size,
                               start, budget, growth, flops), rounded
        # No prior on this device yet: one round, the cheapest measurement, which then
        # serves as the prior of later draws here.
        ms = step_timing.time_rounds(tickets, policy, batch_size, 1, steps, warmup, stats=stats)
    choice = WidthChoice(pick(ms, flops, growth), ms, flops, device, policy, batch_size, False,
                         time.perf_counter() - start, budget_seconds=budget,
                         trace_seconds=stats.get("trace_seconds"), layer=layer,
                         max_flops_growth=growth)
    os.makedirs(folder, exist_ok=True)
    io_utils.atomic_write_json(path, choice.as_dict())
    return choice, rounded


def _layer_candidate(model, rounded, batch_size, policy, folder, device, start, budget,
                     growth, counted):
    """Adds the per-space candidate to `rounded` when its widths (or BN kernels) are new;
    its search's record (None when it ran out of its share of the budget). `counted`:
    the uniform tickets' FLOPs reports, the exact one's the search's FLOPs model."""
    deadline = None if budget is None else start + LAYER_SHARE * budget
    found = layer_widths.choose_layer_widths(
        model, {m: r for m, (r, _) in rounded.items()}, batch_size, policy, folder, device,
        deadline, growth, exact_flops=counted.get(1))
    if found is None:
        return None
    widths = [int(v.sum()) for v in found.masks.values()]
    if found.unfused or all([int(v.sum()) for v in r.values()] != widths
                            for r, _ in rounded.values()):
        rounded[LAYER] = (found.masks, [])      # new widths, or BN kernels of its own
    return found.as_dict()


def _from_prior(model, masks, prior, rounded, device, policy, batch_size, start, budget,
                growth, flops=None) -> WidthChoice:
    """The unmeasured choice of the prior (FLOPs counted on its ticket and the exact one
    alone), or the exact mask where the prior's ticket is over the FLOPs limit; BNs the
    chosen ticket leaves off the prior multiple run unfused (`_off_multiple`)."""
    multiple = _same_widths(model, masks, prior, rounded)
    flops, tickets = dict(flops or {}), {}

    def ticket(m):
        if m not in tickets:
            tickets[m] = _pruned(model, {m: rounded[m]})[m]
        return tickets[m]
    for m in {multiple, 1} & set(rounded) if growth is not None else {multiple}:
        if m not in flops:
            flops[m] = int(flops_lib.count_flops(ticket(m)).total)
    if not allowed(multiple, flops, growth):
        multiple = 1
    return WidthChoice(multiple, {}, flops, device, policy, batch_size, False,
                       time.perf_counter() - start, "prior", budget, max_flops_growth=growth,
                       off_multiple=_off_multiple(ticket(multiple), prior))


def _off_multiple(ticket, multiple: int) -> List[str]:
    """The BatchNormalizations of `ticket` whose width is no multiple of `multiple` (the
    device's measured prior), where oneDNN's fused kernel is slow: measured 2-3x slower
    than the unfused one off multiples of 8 (fp32) or 16 (bf16), and the exact VGG-16
    width 0.25 ticket stepped at 78 ms with them unfused against 99 ms fused."""
    if multiple <= 1:
        return []
    return sorted(layer.name for layer in ticket.layers if bn_kernel.can_unfuse(layer)
                  and int(layer.moving_mean.shape[-1]) % multiple)


def _chosen_masks(choice, rounded):
    """The rounded masks of the chosen multiple, with the warnings rounding gave them."""
    masks, caught = rounded[choice.multiple]
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=3)
    return masks


def round_masks(model, masks, multiple: Union[int, str] = "auto",
                batch_size: Optional[int] = None, policy: Optional[str] = None,
                cache_dir: Optional[str] = None,
                max_flops_growth: Optional[float] = MAX_FLOPS_GROWTH) -> Dict[str, np.ndarray]:
    """`eb_tf.pruning.round_masks`, with `multiple="auto"` measured on this device.

    Args:
      model: the dense model the masks belong to.
      masks: {BN key: bool array}.
      multiple: "auto" (the fastest of `CANDIDATES` here: `choose_multiple`), "none"
        (the masks as they are) or an int >= 1.
      batch_size, policy, cache_dir, max_flops_growth: for "auto", see `choose_multiple`.

    Example:

        masks16 = eb_tf.round_masks(model, masks, multiple="auto", batch_size=128)
    """
    multiple = check_round_multiple(multiple, "eb_tf.round_masks")
    if multiple == "auto":
        return _chosen_masks(*_choose(model, masks, batch_size, policy, cache_dir,
                                      growth=max_flops_growth))
    return rounding.round_masks(model, masks, "none" if multiple == 1 else multiple)


def retrain_budget(epochs: int, epoch_seconds: Optional[float], flops_ratio: float) -> \
        Optional[float]:
    """`BUDGET_FRACTION` of a retrain's predicted seconds: `epochs` ticket epochs at
    `flops_ratio` x the dense epoch's `epoch_seconds` (None: unknown, no budget)."""
    if epoch_seconds is None:
        return None
    return round(BUDGET_FRACTION * max(int(epochs), 0) * float(epoch_seconds)
                 * float(flops_ratio), 3)


def for_run(cfg, model, masks, budget_seconds: Optional[float] = None):
    """(the masks rounded as `cfg.round_multiple` says, the `WidthChoice` of "auto" or
    None): what the draw, ThiNet's reference and the tuner's candidates use. "auto"
    measures at `cfg.batch_size` in the dtype policy of `cfg.retrain_precision`, for at
    most `budget_seconds` (the draw's: `retrain_budget`)."""
    multiple = cfg.round_multiple
    if multiple == "auto":
        policy = POLICIES.get(cfg.retrain_precision, "float32")
        choice, rounded = _choose(model, masks, batch_size=cfg.batch_size, policy=policy,
                                  budget=budget_seconds,
                                  growth=cfg.round_max_flops_growth or None)
        return _chosen_masks(choice, rounded), choice
    return rounding.round_masks(model, masks, "none" if multiple == 1 else multiple), None
