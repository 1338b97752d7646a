r"""Phase 1 of EB Train: dense training with L1 on BN gammas until the EB ticket emerges.

    python -m binaries.eb_search --config=configs/quickstart.py --workdir=/tmp/eb_run

Writes the search checkpoints, EarlyBird masks/weights and the `eb` section of
report.json into --workdir; continue with `eb_prune` and `eb_retrain` on the same folder.
"""
from binaries import cli

_CONFIG, _WORKDIR = cli.define_run_flags(
    "Run folder (created, or resumed).",
    config_help="Run config file (configs/*.py[:arg]); override fields with "
    "--config.field=value.")


@cli.main
def main():
    cli.run_pipeline(_CONFIG.value, _WORKDIR.value, phases=("search",))


def run():
    """The console script `eb-search`."""
    cli.run(main)


if __name__ == "__main__":
    run()
