r"""Train-step time of a dense net vs its p-pruned ticket vs the ticket rounded to x8 widths.

    python -m binaries.bench_step_time                  # VGG-16 width 0.5, 32x32x3, batch 64
    python -m binaries.bench_step_time --model=preresnet56 --ratio=0.7 --repeats=5

Builds the zoo model, gives its BN layers gammas shaped like a trained slimming net's
(`eb_tf.bench.step_time.set_realistic_gammas`: half-normal, shrinking with depth), draws
the p=RATIO ticket (`eb_tf.channel_masks` + `eb_tf.prune`) and the ticket with widths
rounded up to a multiple of --round_multiple (`eb_tf.round_masks`), then times SGD
training steps of the three on the same random batch and prints ms/step next to the
FLOPs ratio. The machine's other load moves the numbers: run it twice and compare.
Takes about a minute on 2 CPU cores.
"""
from absl import flags

from binaries import cli

_MODEL = flags.DEFINE_string("model", "vgg16", "eb_tf.models name.")
_WIDTH = flags.DEFINE_float("width", 0.5, "Width multiplier.", lower_bound=0.01)
_SHAPE = flags.DEFINE_list("input_shape", ["32", "32", "3"], "Input shape H,W,C.")
_CLASSES = flags.DEFINE_integer("classes", 10, "Output classes.", lower_bound=2)
_BATCH = flags.DEFINE_integer("batch", 64, "Batch size.", lower_bound=1)
_RATIO = flags.DEFINE_float("ratio", 0.5, "Pruning ratio p.", lower_bound=0.01,
                            upper_bound=0.99)
_ROUND = flags.DEFINE_integer("round_multiple", 8, "Width multiple of the rounded ticket.",
                              lower_bound=2)
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per round.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Rounds (median reported).", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of weights, gammas and the batch.")


@cli.main
def main():
    import eb_tf  # after flag parsing: --help stays fast
    from eb_tf.bench import step_time
    from eb_tf.compat import keras
    keras.utils.set_random_seed(_SEED.value)
    shape = tuple(int(s) for s in _SHAPE.value)
    dense = eb_tf.models.build(_MODEL.value, _CLASSES.value, shape, width=_WIDTH.value)
    step_time.set_realistic_gammas(dense, seed=_SEED.value)
    masks = eb_tf.channel_masks(dense, _RATIO.value)
    rounded = eb_tf.round_masks(dense, masks, multiple=_ROUND.value)
    p = f"p={_RATIO.value:g}"
    models = {"dense": dense, f"pruned {p}": eb_tf.prune(dense, masks),
              f"pruned {p} rounded x{_ROUND.value}": eb_tf.prune(dense, rounded)}
    rows = step_time.step_times(models, batch=_BATCH.value, steps=_STEPS.value,
                                 repeats=_REPEATS.value, seed=_SEED.value)
    print(f"{_MODEL.value} width {_WIDTH.value:g}, input {shape}, batch {_BATCH.value}, "
          f"median of {_REPEATS.value} rounds of {_STEPS.value} steps")
    print(step_time.format_step_table(rows))


def run():
    """`python -m binaries.bench_step_time` as a function."""
    cli.run(main)


if __name__ == "__main__":
    run()
