r"""Phase 3 of EB Train: retrain the drawn tickets to the budget T (and export if asked).

    python -m binaries.eb_retrain --workdir=/tmp/eb_run
    python -m binaries.eb_retrain --workdir=/tmp/eb_run --config=configs/quickstart.py

Without --config the run folder's own config.json is used; with it, it must match.
Writes retrain/p<r>/final.keras and the final accuracies into report.json.
"""
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Optional: the run's config file; default: WORKDIR/config.json.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder with drawn tickets.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from eb_tf.pipeline import run_dir, runner
    try:
        config = _CONFIG.value
        if config is None:
            config = run_dir.RunDir.existing(_WORKDIR.value).cfg
        runner.run(config, _WORKDIR.value, phases=("retrain", "export"))
    except ValueError as e:
        raise app.UsageError(str(e)) from e


if __name__ == "__main__":
    app.run(main)
