r"""Export a finished EB Train run to TFLite and measure it (size, latency, accuracy).

    python -m binaries.eb_export --workdir=/tmp/eb_quickstart --mode=int8
    python -m binaries.eb_export --workdir=/tmp/eb_quickstart --mode=float32 --side_by_side

Writes WORKDIR/export/<name>/model_<mode>.tflite for each final model (and the dense
network of the search with --side_by_side, as the baseline of the ratios), the table
WORKDIR/export/summary_<mode>.md, and an `export` section in WORKDIR/report.json.
"""
from absl import flags

from binaries import cli

_WORKDIR = cli.define_run_flags("Run folder with final models.").workdir
_MODE = flags.DEFINE_enum("mode", "int8", ["float32", "float16", "dynamic", "int8"],
                          "TFLite export mode.")
_MODELS = flags.DEFINE_list("models", None, "Final models to export (report.json `final` "
                            "names, e.g. 0.5); default: all.")
_SIDE_BY_SIDE = flags.DEFINE_bool("side_by_side", False, "Also export the dense network of "
                                  "the search, as the baseline of the ratios.")
_EVALUATE = flags.DEFINE_bool("evaluate", True, "Measure Keras and TFLite test accuracy.")
_THREADS = flags.DEFINE_integer("num_threads", None, "N of the N-thread latency (default: "
                                "all cores).", lower_bound=1)
_RUNS = flags.DEFINE_integer("num_runs", 100, "Timed batch-1 runs per latency.",
                             lower_bound=1)


@cli.main
def main():
    from eb_tf import pipeline  # after flag parsing: --help stays fast
    section = pipeline.export_run(
        _WORKDIR.value, mode=_MODE.value, models=_MODELS.value,
        side_by_side=_SIDE_BY_SIDE.value, evaluate=_EVALUATE.value,
        num_threads=_THREADS.value, num_runs=_RUNS.value)
    print(section["table"])


def run():
    """The console script `eb-export`."""
    cli.run(main)


if __name__ == "__main__":
    run()
