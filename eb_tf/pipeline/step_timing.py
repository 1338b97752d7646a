"""One SGD training step of a model on a random batch: what the step-time measurements time.

`random_batch(model, batch)` gives `batch` random normal inputs of the model's input
shape and random labels of its classes; `train_step(model)` a compiled step (forward,
backward, momentum update, the model's own regularisation losses) of a private copy of
the model, so the one passed in keeps its weights. Mixed-precision models work: the loss
is taken in float32. `eb_tf.pipeline.savings` (the run's speed next to dense) and
`eb_tf.bench.step_time` (the micro-benchmark) time these steps.

Example:

    from eb_tf.pipeline import step_timing
    x, y = step_timing.random_batch(ticket, 64)
    step = step_timing.train_step(ticket)
    step(x, y).numpy()          # traces; then time further calls
"""
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from eb_tf.compat import keras_for, tf
from eb_tf.pipeline import trainer
from eb_tf.quantization import precision

__all__ = ["ROUND_SECONDS", "random_batch", "train_step", "time_rounds"]

ROUND_SECONDS = 0.25   # a timed round of `time_rounds` lasts at least this long


def random_batch(model, batch: int, seed: int = 0,
                 input_shape: Optional[tuple] = None) -> Tuple[tf.Tensor, tf.Tensor]:
    """(x, y) tensors: `batch` random examples of the model's input shape and labels.

    Args:
      model: a tf_keras or Keras 3 model with one input and a class-score output.
      batch: the number of examples, >= 1.
      seed: the seed of the numbers.
      input_shape: the input shape (no batch) for a model whose own has unknown dims.

    Raises:
      ValueError: a bad `batch`, or an input shape with unknown dimensions.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch={batch!r} must be an int >= 1 (random examples) or an "
                         "(x, y) tuple of arrays")
    shape = tuple(model.inputs[0].shape[1:])
    if any(s is None for s in shape) and input_shape is not None:
        shape = tuple(input_shape)
    if any(s is None for s in shape):
        raise ValueError(f"model {model.name!r} has input shape {shape} with unknown "
                         "dimensions; give batch as (x, y) arrays")
    rng = np.random.default_rng(seed)
    classes = int(model.outputs[0].shape[-1])
    return (tf.constant(rng.normal(size=(batch,) + shape).astype(np.float32)),
            tf.constant(rng.integers(0, classes, size=batch).astype(np.int32)))


def train_step(model, learning_rate: float = 1e-3) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """A compiled SGD step `step(x, y) -> loss` of a private copy of `model`."""
    k = keras_for(model)                     # the step of the model's own Keras
    copy = k.models.clone_model(model)
    copy.set_weights(model.get_weights())
    loss_fn = k.losses.SparseCategoricalCrossentropy(
        from_logits=not trainer.outputs_probabilities(copy))
    optimizer = k.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, tf.cast(copy(x, training=True), tf.float32)) + tf.add_n(
                [0.0] + [tf.cast(v, tf.float32) for v in copy.losses])
        grads = tape.gradient(loss, copy.trainable_variables)
        optimizer.apply_gradients(zip(grads, copy.trainable_variables))
        return loss

    return step


def time_rounds(tickets, policy, batch_size, rounds, steps, warmup,
                 budget=None, stats=None) -> Optional[Dict[int, List[float]]]:
    """{name: ms per step of each round}: `tickets` ({name: model}) in `rounds` interleaved,
    rotated rounds (one `train_step` each, in dtype `policy`) of >= `steps` steps and
    >= `ROUND_SECONDS` (a short step is noise-dominated: tiny models run more steps).

    With a `budget` (seconds), the rounds shrink to fit what is left after tracing (one
    round at least); None when tracing every ticket would not fit (projected from the
    first one), before the others are traced. `stats` (a dict) gets `trace_seconds`.
    """
    start_all = time.perf_counter()
    fns, data, counts, per_step = {}, {}, {}, {}
    for i, (m, ticket) in enumerate(tickets.items()):
        if policy != "float32":
            ticket = precision.with_policy(ticket, policy)
        fns[m] = train_step(ticket)
        data[m] = random_batch(ticket, batch_size)
        fns[m](*data[m]).numpy()                       # trace
        if stats is not None and i == 0:
            stats["trace_seconds"] = round(time.perf_counter() - start_all, 3)
        if budget is not None and i == 0 and \
                (time.perf_counter() - start_all) * len(tickets) > budget:
            return None
        start = time.perf_counter()
        for _ in range(warmup):
            fns[m](*data[m]).numpy()
        per_step[m] = (time.perf_counter() - start) / warmup
        counts[m] = max(steps, int(np.ceil(ROUND_SECONDS / max(per_step[m], 1e-6))))
    if budget is not None:
        left = budget - (time.perf_counter() - start_all)
        one_round = sum(counts[m] * per_step[m] for m in fns)
        rounds = max(1, min(rounds, int(left // max(one_round, 1e-9))))
    ms = {m: [] for m in fns}
    order = list(fns)
    for r in range(rounds):
        for m in order[r % len(order):] + order[:r % len(order)]:   # rotate: no fixed slot
            start = time.perf_counter()
            for _ in range(counts[m]):
                loss = fns[m](*data[m])
            loss.numpy()
            ms[m].append((time.perf_counter() - start) * 1000.0 / counts[m])
    return ms
