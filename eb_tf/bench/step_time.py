"""Micro-benchmarks: train-step time of dense vs pruned nets, and `EarlyBird` overhead.

`step_times` times one SGD training step (forward, backward, update, with the models'
own regularisation losses) of each model on the same random batch, next to its
per-sample FLOPs (`eb_tf.count_flops`), so that the speed-up a channel-pruned ticket
really gets can be read against the one its FLOPs promise. `earlybird_ms` times
`EarlyBird.on_epoch_end` (read gammas, draw every ratio's mask, compare the window) on
a model as it is. `set_realistic_gammas` gives an untrained model BN gammas shaped
like a trained network-slimming net's, for timing a ticket without training one.

Timings on a shared machine move with other load: models are timed round-robin
(`repeats` rounds) and the median round is reported; repeat whole runs and compare.

Example:

    from eb_tf.bench import step_time
    dense = eb_tf.models.build("vgg16", 10, (32, 32, 3), width=0.5)
    step_time.set_realistic_gammas(dense, seed=0)
    ticket = eb_tf.prune(dense, eb_tf.channel_masks(dense, 0.5))
    rows = step_time.step_times({"dense": dense, "p=0.5": ticket}, batch=64, steps=10)
    rows["p=0.5"]["ms_per_step"], rows["p=0.5"]["flops_ratio"]
"""
import time
from typing import Dict, Mapping, Sequence

import numpy as np

from eb_tf.compat import check_tf_keras_model, keras, tf
from eb_tf.pipeline import step_timing
from eb_tf.pruning import flops as flops_lib
from eb_tf.sparsity import batchnorm
from eb_tf.sparsity.early_bird import EarlyBird

__all__ = ["step_times", "earlybird_ms", "set_realistic_gammas", "format_step_table"]


def _batch_for(model, batch, seed):
    """(x, y) for `model`: the given arrays, or `batch` random examples and labels."""
    if isinstance(batch, tuple):
        return tuple(tf.constant(a) for a in batch)
    return step_timing.random_batch(model, batch, seed)


def step_times(models: Mapping[str, "keras.Model"], batch=64, steps: int = 10,
               warmup: int = 2, repeats: int = 3, seed: int = 0) -> Dict[str, dict]:
    """Milliseconds per training step of each model, next to its FLOPs (first = baseline).

    Args:
      models: {name: tf_keras model}; the first one is the baseline of the ratios.
        Each is copied (`clone_model` + weights) before training, so the models passed
        in keep their weights.
      batch: batch size (random normal inputs of the model's input shape, random
        labels) or an `(x, y)` tuple of arrays.
      steps: timed steps per round (>= 1); one round ends with a device sync.
      warmup: untimed steps first (tracing and allocation), >= 1.
      repeats: rounds, models interleaved round-robin; the median round counts.
      seed: seed of the random batch.

    Returns:
      {name: {"ms_per_step" (median round), "ms_rounds" (every round), "flops" (per
      sample forward), "params", "flops_ratio", "time_ratio"}} (ratios vs the first).

    Raises:
      ValueError: no models, a non-tf_keras model, or bad steps/warmup/repeats/batch.

    Example:
      >>> step_times({"dense": dense, "ticket": ticket}, batch=64)["ticket"]["time_ratio"]
      0.64
    """
    if not models:
        raise ValueError("models is empty; give {name: tf_keras model}, baseline first")
    for name, value, lo in (("steps", steps, 1), ("warmup", warmup, 1), ("repeats", repeats, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{name}={value!r} must be an int >= {lo}")
    runners, rounds = {}, {}
    for name, model in models.items():
        check_tf_keras_model(model, f"eb_tf.bench.step_time.step_times (model {name!r})")
        x, y = _batch_for(model, batch, seed)
        step = step_timing.train_step(model)
        for _ in range(warmup):
            step(x, y).numpy()
        runners[name], rounds[name] = (step, x, y), []
    for _ in range(repeats):
        for name, (step, x, y) in runners.items():
            start = time.perf_counter()
            for _ in range(steps):
                loss = step(x, y)
            loss.numpy()  # waits for the last step
            rounds[name].append(1e3 * (time.perf_counter() - start) / steps)
    out = {}
    for name, model in models.items():
        out[name] = {"ms_per_step": float(np.median(rounds[name])),
                     "ms_rounds": [round(r, 3) for r in rounds[name]],
                     "flops": flops_lib.count_flops(model).total,
                     "params": flops_lib.count_params(model).total}
    base = out[next(iter(out))]
    for row in out.values():
        row["flops_ratio"] = row["flops"] / base["flops"] if base["flops"] else None
        row["time_ratio"] = row["ms_per_step"] / base["ms_per_step"]
    return out


def format_step_table(rows: Mapping[str, dict]) -> str:
    """`step_times` rows as a markdown table: ms/step (median and every round), time and
    FLOPs ratios, and their quotient, the efficiency (1.0: the time falls as the FLOPs)."""
    lines = ["| model | params | MFLOPs/sample | FLOPs x | ms/step | time x | time x / FLOPs x "
             "| rounds (ms) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, r in rows.items():
        quotient = r["time_ratio"] / r["flops_ratio"] if r["flops_ratio"] else float("nan")
        rounds = ", ".join(f"{v:.1f}" for v in r["ms_rounds"])
        lines.append(f"| {name} | {r['params']:,} | {r['flops'] / 1e6:.2f} | "
                     f"{r['flops_ratio']:.3f} | {r['ms_per_step']:.2f} | {r['time_ratio']:.3f} "
                     f"| {quotient:.2f} | {rounds} |")
    return "\n".join(lines)


def earlybird_ms(model, ratios: Sequence[float] = (0.5,), calls: int = 20,
                 warmup: int = 2) -> dict:
    """Wall time of `EarlyBird.on_epoch_end` on `model` as it is (no file writes).

    Returns:
      {"median_ms", "p90_ms", "min_ms", "calls", "channels", "bn_layers"}.

    Raises:
      ValueError: a non-tf_keras model, one without BN gammas, or calls < 1.
    """
    check_tf_keras_model(model, "eb_tf.bench.step_time.earlybird_ms")
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise ValueError(f"calls={calls!r} must be an int >= 1")
    refs = batchnorm.bn_layers(model)
    if not refs:
        raise ValueError(f"model {model.name!r} has no trainable BatchNormalization with a "
                         "scale (gamma); EarlyBird has nothing to track")
    bird = EarlyBird(ratios=tuple(ratios), stop_training=False)
    bird.set_model(model)
    bird.on_train_begin()
    times = []
    for i in range(warmup + calls):
        start = time.perf_counter()
        bird.on_epoch_end(i, {})
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - start))
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "min_ms": float(np.min(times)), "calls": calls,
            "channels": int(sum(r.layer.gamma.shape[0] for r in refs)), "bn_layers": len(refs)}


def set_realistic_gammas(model, seed: int = 0, last_scale: float = 0.3) -> None:
    """Gives every candidate BN layer half-normal gammas that shrink with depth (in place).

    Layer i of n gets |N(0, s_i)| with s_i falling linearly from 1 to `last_scale`, the
    pattern of trained network-slimming nets (late VGG layers lose most channels under
    one global threshold), so a p=0.5 ticket drawn from them has realistic, uneven
    widths. Only gammas change.
    """
    check_tf_keras_model(model, "eb_tf.bench.step_time.set_realistic_gammas")
    if not 0.0 < last_scale <= 1.0:
        raise ValueError(f"last_scale={last_scale!r} must be in (0, 1]")
    refs = batchnorm.bn_layers(model)
    rng = np.random.default_rng(seed)
    for i, ref in enumerate(refs):
        scale = 1.0 - (1.0 - last_scale) * i / max(len(refs) - 1, 1)
        ref.gamma.assign(np.abs(rng.normal(0.0, scale, ref.gamma.shape)).astype(np.float32))
