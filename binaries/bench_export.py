r"""Edge benchmark: dense vs Early-Bird ticket vs tfmot unstructured sparsity, as TFLite.

    python -m binaries.bench_export                       # VGG-16 width 0.5, CIFAR shape
    python -m binaries.bench_export --model=preresnet56 --ratio=0.7 --modes=float32 \
        --out=/tmp/bench_preresnet56

Builds the zoo model with random BN gammas (uniform in [0, 1): the ticket's widths
follow the global |gamma| threshold as in EB Train; only size and latency are measured,
so the weights need no training), draws the p=RATIO ticket with `eb_tf.channel_masks` +
`eb_tf.prune`, and makes tfmot's unstructured magnitude-pruned copy at the same
sparsity. Prints size, batch-1 latency (1 and N threads) and FLOPs, with ratios to the
dense model, per export mode. Run on a quiet machine and repeat (--repeats): latency
medians move with other load. Takes about a minute per repeat for VGG-16 width 0.5.
"""
from absl import flags

from binaries import cli

_MODEL = flags.DEFINE_string("model", "vgg16", "eb_tf.models name.")
_WIDTH = flags.DEFINE_float("width", 0.5, "Width multiplier.", lower_bound=0.01)
_RATIO = flags.DEFINE_float("ratio", 0.5, "Pruning ratio p of the ticket and sparsity of "
                            "the unstructured baseline.", lower_bound=0.01, upper_bound=0.99)
_MODES = flags.DEFINE_list("modes", ["float32", "int8"], "Export modes.")
_THREADS = flags.DEFINE_integer("num_threads", None, "N of the N-thread latency.",
                                lower_bound=1)
_RUNS = flags.DEFINE_integer("num_runs", 200, "Timed batch-1 runs per latency.",
                             lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 1, "Whole measurements, one table each.",
                                lower_bound=1)
_ROUND = flags.DEFINE_integer("round_multiple", 0, "Also a ticket whose kept widths are "
                               "rounded up to a multiple of this (eb_tf.round_masks); 0: no.",
                               lower_bound=0)
_OUT = flags.DEFINE_string("out", None, "Folder for the .tflite files, table.md, rows.json.")
cli.register_path_validator("out", cli.check_folder)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of weights, gammas and calibration data.")


@cli.main
def main():
    import numpy as np  # after flag parsing: --help stays fast

    import eb_tf
    from eb_tf import io_utils
    from eb_tf.compat import keras
    from eb_tf.export import compare
    keras.utils.set_random_seed(_SEED.value)
    dense = eb_tf.models.build(_MODEL.value, 10, (32, 32, 3), width=_WIDTH.value)
    rng = np.random.default_rng(_SEED.value)
    for ref in eb_tf.bn_layers(dense):
        ref.gamma.assign(rng.uniform(0.0, 1.0, ref.gamma.shape).astype(np.float32))
    masks = eb_tf.channel_masks(dense, _RATIO.value)
    models = {"dense": dense, f"EB ticket p={_RATIO.value:g}": eb_tf.prune(dense, masks)}
    if _ROUND.value:
        rounded = eb_tf.round_masks(dense, masks, multiple=_ROUND.value)
        models[f"EB ticket p={_RATIO.value:g} x{_ROUND.value}"] = eb_tf.prune(dense, rounded)
    models[f"tfmot {_RATIO.value:.0%} unstructured"] = compare.magnitude_pruned(
        dense, _RATIO.value)
    calibration = rng.normal(size=(100, 32, 32, 3)).astype(np.float32)
    for repeat in range(_REPEATS.value):
        table = eb_tf.compare_models(models, modes=_MODES.value,
                                     representative_data=calibration,
                                     num_threads=_THREADS.value, num_runs=_RUNS.value,
                                     out_dir=_OUT.value and f"{_OUT.value}/tflite")
        print(f"\nrepeat {repeat + 1}/{_REPEATS.value}: {_MODEL.value} width {_WIDTH.value:g}")
        print(table.markdown())
        if _OUT.value:
            io_utils.atomic_write_text(f"{_OUT.value}/table_{repeat}.md", table.markdown())
            io_utils.atomic_write_json(f"{_OUT.value}/rows_{repeat}.json", table.rows)


def run():
    """`python -m binaries.bench_export` as a function."""
    cli.run(main)


if __name__ == "__main__":
    run()
