r"""Phase 3 of EB Train: retrain the drawn tickets to the budget T (and export if asked).

    python -m binaries.eb_retrain --workdir=/tmp/eb_run
    python -m binaries.eb_retrain --workdir=/tmp/eb_run --config=configs/quickstart.py

Without --config the run folder's own config.json is used; with it, it must match.
Writes retrain/p<r>/final.keras and the final accuracies into report.json.
"""
from binaries import cli

_CONFIG, _WORKDIR = cli.define_run_flags(
    "Run folder with drawn tickets.",
    config_help="Optional: the run's config file; default: WORKDIR/config.json.",
    config_required=False)


@cli.main
def main():
    cli.run_pipeline(_CONFIG.value, _WORKDIR.value, phases=("retrain", "export"))


def run():
    """The console script `eb-retrain`."""
    cli.run(main)


if __name__ == "__main__":
    run()
