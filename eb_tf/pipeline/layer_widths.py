"""Per-layer ticket widths (NetAdapt-style): each channel space rounded to its own multiple.

One width multiple for the whole ticket is a compromise: rounding pays where a layer's
kernels are slow on its width and costs FLOPs for nothing elsewhere. What is slow is
mostly not the convolution. Measured on an AVX-512/AMX Xeon at batch 128, oneDNN's
fused batch norm (forward and backward) took 40 ms at 32x32x29 against 5 ms at 32
channels in fp32, 73 ms against 4 ms in bf16, where only multiples of 8 (fp32) or 16
(bf16) are fast, while the conv in front of it barely moved (4.2 ms either way); and a
`ChannelSelect` gather in front of a pre-activation BN costs a copy forward and a
scatter backward. So `choose_layer_widths` gives every channel space the candidate
multiple that suits the layers around it:

1. Each uniform candidate (`widths.CANDIDATES`: 1 = exact, 8, 16, 32) gives every
   space a width, and every conv or dense layer, BatchNormalization and gather an
   input and an output width.
2. A latency table holds the time of one such layer alone, forward and both gradients
   (the input's only where it has one), eager, at the run's batch size and dtype
   policy, for an (input width, output width) pair; a gather that keeps every channel
   costs 0 (`prune` drops it). Entries are measured when first needed and cached per
   device, TensorFlow version, policy and batch (`<cache>/widths/layers/`), so later
   draws on this machine measure only new pairs.
3. The summed layer time is minimised by iterated conditional modes: from the best
   uniform assignment, each space in turn takes the candidate that minimises the time
   of the layers reading or writing it; a candidate must save `GAIN` of that time to
   replace one with fewer channels. Three passes at most.
4. The composed masks take, per space, the channels of its chosen candidate: never
   fewer than the mask keeps, revived channels the top-|gamma| ones (as `round_masks`).

The table only predicts (eager per-layer times, no fusion, no memory effects).
`widths.choose_multiple` times the composed ticket as one more whole-network candidate,
`"layer"`, in the same interleaved rounds as the uniform ones, so it is chosen only
when its measured step is the fastest (ties to fewer FLOPs). Measured here
(preresnet56, p = 0.5, fp32, batch 128, 5 interleaved rounds): dense 597 ms, the x8
ticket 793, x32 666, the per-layer ticket 629 ms for 0.59x the FLOPs.

Example:

    rounded = {m: eb_tf.pruning.round_masks(model, masks, "none" if m == 1 else m)
               for m in (1, 8, 16)}
    choice = layer_widths.choose_layer_widths(model, rounded, batch_size=128)
    choice.assignment      # per space, in `spaces(model, masks)` order: e.g. [1, 8, 1, 16, ...]
    ticket = eb_tf.prune(model, choice.masks)
"""
import dataclasses
import hashlib
import json
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from eb_tf import io_utils
from eb_tf.compat import check_model, tf
from eb_tf.data import cache
from eb_tf.pruning import graph as graph_lib
from eb_tf.pruning import plan as channel_plan
from eb_tf.pruning import rounding

__all__ = ["GAIN", "LayerChoice", "spaces", "compose", "choose_layer_widths"]

GAIN = 0.01            # a wider candidate must save 1% of its layers' time
_PASSES = 3
_ROUND_SECONDS = 0.01  # a timed round of one layer lasts at least this long
_ROUNDS = 3
_SHAPE_KEYS = ("kernel_size", "strides", "padding", "dilation_rate", "groups", "use_bias",
               "axis", "fused", "renorm")


@dataclasses.dataclass(frozen=True)
class LayerChoice:
    """What `choose_layer_widths` predicted and chose.

    Attributes:
      assignment: per channel space (in `spaces` order), the candidate whose width it takes.
      masks: the composed masks.
      predicted_ms: summed layer ms of the assignment.
      uniform_ms: {candidate: summed layer ms of that candidate everywhere}.
      measured: latency-table entries measured now (the rest were cached).
      seconds: time spent.
    """
    assignment: List[int]
    masks: Dict[str, np.ndarray]
    predicted_ms: float
    uniform_ms: Dict[int, float]
    measured: int
    seconds: float

    def as_dict(self) -> dict:
        """JSON-ready, without the masks."""
        return {"assignment": self.assignment, "predicted_ms": round(self.predicted_ms, 3),
                "uniform_ms": {str(m): round(v, 3) for m, v in self.uniform_ms.items()},
                "measured": self.measured, "seconds": round(self.seconds, 3)}


class _OutOfTime(Exception):
    pass


def spaces(model, masks) -> List[Tuple[int, ...]]:
    """The channel spaces of the ticket of `masks` (their identity roots), in layer order."""
    return list(rounding.space_widths(channel_plan.analyze(model, masks)))


def compose(model, rounded: Dict[int, Dict[str, np.ndarray]], assignment: Sequence[int],
            base: int = 1) -> Dict[str, np.ndarray]:
    """Masks whose space i has the channels of `rounded[assignment[i]]`.

    Args:
      model: the dense model.
      rounded: {candidate: masks rounded to it}; `base` must be one of them.
      assignment: per space of `spaces(model, rounded[base])`, a key of `rounded`.
      base: where BN channels of no space come from.
    """
    return _compose(channel_plan.analyze(model, rounded[base]), rounded, assignment, base)


def _compose(plan, rounded, assignment, base):
    """`compose` on the plan of `rounded[base]`."""
    order = list(rounding.space_widths(plan))
    if len(order) != len(assignment):
        raise ValueError(f"eb_tf.pipeline.layer_widths.compose: {len(assignment)} widths for "
                         f"{len(order)} channel spaces")
    space_of = {r: i for i, roots in enumerate(order) for r in roots}
    out = {k: v.copy() for k, v in rounded[base].items()}
    for op, h in zip(plan.graph.ops, plan.handlers):
        key = plan.bn_key.get(id(op.layer))
        if h.const == "bn" and h.kind == "unary" and key in out:
            for pos, root in enumerate(plan.roots(op.inputs[0]).tolist()):
                if root in space_of:
                    out[key][pos] = rounded[assignment[space_of[root]]][key][pos]
    return out


@dataclasses.dataclass
class _Op:
    layer: object
    kind: str                       # "producer" (conv, dense), "bn" or "gather" (its input)
    signature: str
    spatial: Tuple[int, ...]
    input_grad: bool
    in_space: Optional[int]
    out_space: int
    cin: Dict[int, int]
    cout: Dict[int, int]


def _resizable(layer) -> Optional[str]:
    """The config key of the layer's output width ('filters' or 'units'), or None when
    the layer is not one this table times (grouped, channels_first, a nested model)."""
    if graph_lib.is_model(layer) or not hasattr(layer, "get_config"):
        return None
    config = layer.get_config()
    if config.get("data_format") == "channels_first" or config.get("groups", 1) != 1:
        return None
    return next((k for k in ("filters", "units") if k in config), None)


def _ops(plans, order) -> List[_Op]:
    """The timed layers: conv/dense producers, BatchNormalizations and the gathers in
    front of them, with their input and output widths under each candidate's plan."""
    index = {roots: i for i, roots in enumerate(order)}
    plan = plans[1]
    out = []
    for op, h in zip(plan.graph.ops, plan.handlers):
        kind = "producer" if h.kind == "producer" and _resizable(op.layer) else \
            "bn" if h.const == "bn" and not graph_lib.is_model(op.layer) else None
        if kind is None or plan.shared(op):
            continue
        shape = tuple(plan.graph.tensors[op.inputs[0]].shape)[1:-1]
        in_space = index.get(tuple(plan.roots(op.inputs[0]).tolist()))
        if any(s is None for s in shape) or (kind == "bn" and in_space is None):
            continue
        config = op.layer.get_config()
        signature = json.dumps([type(op.layer).__name__, list(shape)] +
                               [config.get(k) for k in _SHAPE_KEYS], default=str)
        cin = {m: int(p.p_in[(op.index, 0)].size) for m, p in plans.items()}
        if kind == "bn":                             # normalises what it reads
            out.append(_Op(op.layer, kind, signature, shape, True, in_space, in_space,
                           cin, cin))
            present = {m: int(p.phys[op.inputs[0]].size) for m, p in plans.items()}
            if any(present[m] > cin[m] for m in plans):   # prune gathers what it reads
                out.append(_Op(op.layer, "gather", json.dumps(["gather", list(shape)]),
                               shape, True, in_space, in_space, present, cin))
            continue
        src = plan.graph.tensors[op.inputs[0]]
        out.append(_Op(op.layer, kind, signature, shape, src.producer is not None, in_space,
                       index[tuple(plan.roots(op.outputs[0]).tolist())], cin,
                       {m: int(p.phys[op.outputs[0]].size) for m, p in plans.items()}))
    return out


class _Table:
    """The per-layer latency table of one device, TF version, policy and batch."""

    def __init__(self, folder, device, policy, batch_size, deadline):
        spec = {"device": device, "tf": tf.__version__, "policy": policy, "batch": batch_size}
        name = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
        self.path = os.path.join(folder, "layers", name + ".json")
        self.spec, self.policy, self.batch, self.deadline = spec, policy, batch_size, deadline
        self.entries, self.measured = {}, 0
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                self.entries = json.load(f).get("entries", {})

    def ms(self, op: _Op, cin: int, cout: int) -> float:
        key = f"{op.signature}|{cin}|{cout}|{int(op.input_grad)}"
        if key not in self.entries:
            if self.deadline is not None and time.perf_counter() > self.deadline:
                raise _OutOfTime()
            self.entries[key] = _time_layer(op, cin, cout, self.batch, self.policy)
            self.measured += 1
        return self.entries[key]

    def save(self):
        if self.measured:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            io_utils.atomic_write_json(self.path, {**self.spec, "entries": self.entries})


def _time_layer(op: _Op, cin: int, cout: int, batch: int, policy: str) -> float:
    """Median ms of one layer's forward and gradients at (cin, cout), eager."""
    if min(cin, cout) < 1 or (op.kind == "gather" and cin == cout):
        return 0.0                                   # nothing to gather: no ChannelSelect
    if op.kind == "gather":
        keep = tf.constant(np.arange(cout) * cin // cout, tf.int32)
        return _time_step(lambda x: tf.gather(x, keep, axis=-1), [], op, cin, batch, policy)
    config = op.layer.get_config()
    config.update({"dtype": policy, "name": "timed"})
    if op.kind == "producer":
        config[_resizable(op.layer)] = cout
    layer = type(op.layer).from_config(config)
    return _time_step(lambda x: layer(x, training=True), layer, op, cin, batch, policy)


def _time_step(fn, layer, op: _Op, cin: int, batch: int, policy: str) -> float:
    """Median ms of `fn`'s forward and gradients (input's, and `layer`'s weights)."""
    dtype = tf.bfloat16 if "bfloat16" in policy else tf.float16 if "float16" in policy \
        else tf.float32
    x = tf.random.stateless_normal((batch,) + op.spatial + (cin,), (1, 2), dtype=dtype)
    dy = tf.random.stateless_normal(fn(x).shape, (3, 4), dtype=dtype)
    variables = list(layer.trainable_variables) if layer else []

    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        sources = ([x] if op.input_grad else []) + variables
        return tape.gradient(y, sources, output_gradients=tf.cast(dy, y.dtype))[0]

    step().numpy()
    start = time.perf_counter()
    step().numpy()
    reps = max(1, int(np.ceil(_ROUND_SECONDS / max(time.perf_counter() - start, 1e-6))))
    rounds = []
    for _ in range(_ROUNDS):
        start = time.perf_counter()
        for _ in range(reps):
            grad = step()
        grad.numpy()
        rounds.append((time.perf_counter() - start) * 1000.0 / reps)
    return float(np.median(rounds))


def _cost(table, ops, assignment, only=None) -> float:
    """Summed layer ms of `assignment` (over `only`, the layers of one space, if given).
    A layer whose input is no space (a Flatten) reads its exact-mask width."""
    total = 0.0
    for op in ops if only is None else only:
        cin = op.cin[1] if op.in_space is None else op.cin[assignment[op.in_space]]
        total += table.ms(op, cin, op.cout[assignment[op.out_space]])
    return total


def choose_layer_widths(model, rounded: Dict[int, Dict[str, np.ndarray]],
                        batch_size: int = 128, policy: str = "float32",
                        cache_dir: Optional[str] = None, device: Optional[str] = None,
                        deadline: Optional[float] = None) -> Optional[LayerChoice]:
    """The per-space candidates that minimise the summed measured layer time.

    Args:
      model: the dense float32 model.
      rounded: {candidate multiple: the masks rounded to it}, the exact mask (1) among them.
      batch_size, policy: what the layers are timed at.
      cache_dir: the widths cache folder (None: `<eb_tf cache>/widths`); the table lives
        in its `layers/` folder.
      device: the device the table belongs to (`widths.device_descriptor()`); with the
        TF version, policy and batch it names the table file.
      deadline: a `time.perf_counter()` value; measuring stops there and None is returned
        (the entries measured so far are kept for the next draw).

    Returns:
      A `LayerChoice`, or None past the deadline or when no layer can be timed.
    """
    start = time.perf_counter()
    if 1 not in rounded:
        raise ValueError("eb_tf.pipeline.layer_widths.choose_layer_widths: the exact mask "
                         "(candidate 1) must be among the rounded masks")
    check_model(model, "eb_tf.pipeline.layer_widths.choose_layer_widths")
    plans = {m: channel_plan.analyze(model, r) for m, r in rounded.items()}
    order = list(rounding.space_widths(plans[1]))
    ops = _ops(plans, order)
    if not ops:
        return None
    folder = cache_dir or cache.cache_path("widths")
    table = _Table(folder, device or "", policy, int(batch_size), deadline)
    candidates = sorted(rounded)
    touching = {s: [op for op in ops if s in (op.in_space, op.out_space)]
                for s in range(len(order))}
    try:
        uniform = {m: _cost(table, ops, [m] * len(order)) for m in candidates}
        best = min(candidates, key=lambda m: (uniform[m], m))
        assignment = [best] * len(order)
        for _ in range(_PASSES):
            changed = False
            for s, local in touching.items():
                if not local:
                    continue
                current = assignment[s]
                times = {}
                for m in candidates:
                    trial = assignment[:s] + [m] + assignment[s + 1:]
                    times[m] = _cost(table, ops, trial, local)
                width = {m: sum(op.cout[m] for op in local
                                if op.out_space == s and op.kind == "producer")
                         for m in candidates}
                pick = min(candidates, key=lambda m: (times[m], width[m], m))
                if width[pick] > width[current] and \
                        times[pick] > times[current] * (1 - GAIN):
                    pick = current                   # wider for too little: keep
                if pick != current:
                    assignment[s], changed = pick, True
            if not changed:
                break
        predicted = _cost(table, ops, assignment)
    except _OutOfTime:
        table.save()
        return None
    table.save()
    return LayerChoice(assignment, _compose(plans[1], rounded, assignment, 1), predicted,
                       uniform, table.measured, time.perf_counter() - start)
