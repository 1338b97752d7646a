r"""Export a finished EB Train run to TFLite and measure it (size, latency, accuracy).

    python -m binaries.eb_export --workdir=/tmp/eb_quickstart --mode=int8
    python -m binaries.eb_export --workdir=/tmp/eb_quickstart --mode=float32 --side_by_side

Writes WORKDIR/export/<name>/model_<mode>.tflite for each final model (and the dense
network of the search with --side_by_side, as the baseline of the ratios), the table
WORKDIR/export/summary_<mode>.md, and an `export` section in WORKDIR/report.json.
"""
from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder with final models.")
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
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from eb_tf.pipeline import export_phase  # after flag parsing: --help stays fast
    try:
        section = export_phase.export_run(
            _WORKDIR.value, mode=_MODE.value, models=_MODELS.value,
            side_by_side=_SIDE_BY_SIDE.value, evaluate=_EVALUATE.value,
            num_threads=_THREADS.value, num_runs=_RUNS.value)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    print(section["table"])


if __name__ == "__main__":
    app.run(main)
