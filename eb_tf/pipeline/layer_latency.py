"""The per-layer latency table of `layer_widths`: single layers timed at candidate widths.

The table times the layers whose cost depends on the ticket's widths, one at a time:
every conv or dense producer, every BatchNormalization, and the `ChannelSelect` gather
that `prune` puts in front of a pre-activation BN reading part of its stream. Each is
rebuilt alone at an (input width, output width) pair, in the run's dtype policy and at
its batch size, and timed eagerly, forward plus the gradients of its input (where it
has one) and weights: the median of `_ROUNDS` rounds of at least `_ROUND_SECONDS`. A
gather that keeps every channel costs 0 (`prune` drops it). A tf_keras BN is timed with
both its kernels, fused and unfused (`eb_tf.pruning.bn_kernel`; the unfused one traced,
as it runs in training), and costs the faster: oneDNN's fused one is slow off
multiples of 8 (fp32) or 16 (bf16). Entries are measured when first asked for and
cached per device, TensorFlow version, policy and batch in
`<widths cache>/layers/<hash>.json`, so later draws on this machine measure only the
pairs they have not seen. Eager times overstate small layers (call overhead), so the
summed table ranks assignments; it does not predict the step.

Example:

    plans = {m: channel_plan.analyze(model, r) for m, r in rounded.items()}
    order = list(rounding.space_widths(plans[1]))
    layers = layer_latency.timed_layers(plans, order)
    table = layer_latency.LatencyTable(folder, device, "float32", 128)
    layer_latency.summed_ms(table, layers, [8] * len(order))   # every space at x8
"""
import dataclasses
import hashlib
import json
import os
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from eb_tf import io_utils
from eb_tf.compat import tf
from eb_tf.pruning import bn_kernel
from eb_tf.pruning import graph as graph_lib

__all__ = ["UNFUSED_SHARE", "TimedLayer", "OutOfTime", "timed_layers", "LatencyTable",
           "time_layer", "summed_ms"]

UNFUSED_SHARE = 0.8    # a BN runs unfused where that takes < 80% of the fused kernel's time

_ROUND_SECONDS = 0.01  # a timed round of one layer lasts at least this long
_ROUNDS = 3
_SHAPE_KEYS = ("kernel_size", "strides", "padding", "dilation_rate", "groups", "use_bias",
               "axis", "fused", "renorm")


class OutOfTime(Exception):
    """`LatencyTable.ms` needed a new entry after the table's deadline."""


@dataclasses.dataclass
class TimedLayer:
    """One timed layer of the ticket: its kind, shape and widths under each candidate."""
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


def timed_layers(plans, order) -> List[TimedLayer]:
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
            out.append(TimedLayer(op.layer, kind, signature, shape, True, in_space, in_space,
                           cin, cin))
            present = {m: int(p.phys[op.inputs[0]].size) for m, p in plans.items()}
            if any(present[m] > cin[m] for m in plans):   # prune gathers what it reads
                out.append(TimedLayer(op.layer, "gather", json.dumps(["gather", list(shape)]),
                               shape, True, in_space, in_space, present, cin))
            continue
        src = plan.graph.tensors[op.inputs[0]]
        out.append(TimedLayer(op.layer, kind, signature, shape, src.producer is not None, in_space,
                       index[tuple(plan.roots(op.outputs[0]).tolist())], cin,
                       {m: int(p.phys[op.outputs[0]].size) for m, p in plans.items()}))
    return out


class LatencyTable:
    """The per-layer latency table of one device, TF version, policy and batch.

    Args:
      folder: the widths cache folder; the table is `<folder>/layers/<hash>.json`.
      device, policy, batch_size: what the layers are timed on, at and in.
      deadline: a `time.perf_counter()` value after which `ms` raises `OutOfTime`
        instead of measuring (None: never).
    """

    def __init__(self, folder, device, policy, batch_size, deadline):
        spec = {"device": device, "tf": tf.__version__, "policy": policy, "batch": batch_size}
        name = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
        self.path = os.path.join(folder, "layers", name + ".json")
        self.spec, self.policy, self.batch, self.deadline = spec, policy, batch_size, deadline
        self.entries, self.measured = {}, 0
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                self.entries = json.load(f).get("entries", {})

    def ms(self, op: TimedLayer, cin: int, cout: int) -> float:
        """The layer's median ms at (cin, cout): cached, or measured now; for a BN whose
        kernel can be chosen, that of the kernel `unfused` chooses."""
        fused = self._entry(op, cin, cout, False)
        if not self.unfused(op, cin):
            return fused
        return self._entry(op, cin, cout, True)

    def unfused(self, op: TimedLayer, width: int) -> bool:
        """True where BN `op` at `width` channels runs faster unfused: in less than
        `UNFUSED_SHARE` of the fused kernel's time (both are timed)."""
        if op.kind != "bn" or not bn_kernel.can_unfuse(op.layer):
            return False
        return self._entry(op, width, width, True) < \
            UNFUSED_SHARE * self._entry(op, width, width, False)

    def _entry(self, op, cin, cout, unfused) -> float:
        key = f"{op.signature}|{cin}|{cout}|{int(op.input_grad)}" + ("|unfused" * unfused)
        if key not in self.entries:
            if self.deadline is not None and time.perf_counter() > self.deadline:
                raise OutOfTime()
            self.entries[key] = time_layer(op, cin, cout, self.batch, self.policy,
                                           unfused=unfused)
            self.measured += 1
        return self.entries[key]

    def save(self):
        """Writes the table when something new was measured (temp file, then rename)."""
        if self.measured:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            io_utils.atomic_write_json(self.path, {**self.spec, "entries": self.entries})


def time_layer(op: TimedLayer, cin: int, cout: int, batch: int, policy: str,
               unfused: bool = False) -> float:
    """Median ms of one layer's forward and gradients at (cin, cout), eager; with
    `unfused`, a BN's unfused kernel, traced."""
    if min(cin, cout) < 1 or (op.kind == "gather" and cin == cout):
        return 0.0                                   # nothing to gather: no ChannelSelect
    if op.kind == "gather":
        keep = tf.constant(np.arange(cout) * cin // cout, tf.int32)
        return _time_step(lambda x: tf.gather(x, keep, axis=-1), [], op, cin, batch, policy)
    config = op.layer.get_config()
    config.update({"dtype": policy, "name": "timed"})
    if op.kind == "producer":
        config[_resizable(op.layer)] = cout
    if unfused:
        config["fused"] = False
    layer = type(op.layer).from_config(config)
    return _time_step(lambda x: layer(x, training=True), layer, op, cin, batch, policy,
                      graph=unfused)


def _time_step(fn, layer, op: TimedLayer, cin: int, batch: int, policy: str,
               graph: bool = False) -> float:
    """Median ms of `fn`'s forward and gradients (input's, and `layer`'s weights), eager
    or (`graph`) as one `tf.function`: the unfused BN is a dozen small ops, which eager
    runs one by one (measured 46-55 ms at 128x32x32x32 against 19-26 ms traced)."""
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

    if graph:
        step = tf.function(step)
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


def summed_ms(table, ops, assignment, only=None) -> float:
    """Summed layer ms of `assignment` (over `only`, the layers of one space, if given).
    A layer whose input is no space (a Flatten) reads its exact-mask width."""
    total = 0.0
    for op in ops if only is None else only:
        cin = op.cin[1] if op.in_space is None else op.cin[assignment[op.in_space]]
        total += table.ms(op, cin, op.cout[assignment[op.out_space]])
    return total
