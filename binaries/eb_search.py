r"""Phase 1 of EB Train: dense training with L1 on BN gammas until the EB ticket emerges.

    python -m binaries.eb_search --config=configs/quickstart.py --workdir=/tmp/eb_run

Writes the search checkpoints, EarlyBird masks/weights and the `eb` section of
report.json into --workdir; continue with `eb_prune` and `eb_retrain` on the same folder.
"""
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Run config file (configs/*.py[:arg]); override fields with "
    "--config.field=value.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (created, or resumed).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from eb_tf.pipeline import runner
    try:
        runner.run(_CONFIG.value, _WORKDIR.value, phases=("search",))
    except ValueError as e:
        raise app.UsageError(str(e)) from e


if __name__ == "__main__":
    app.run(main)
