r"""Phase 2 of EB Train: draw the tickets of a searched run (prune to a smaller model).

    python -m binaries.eb_prune --workdir=/tmp/eb_run
    python -m binaries.eb_prune --workdir=/tmp/eb_run --config=configs/quickstart.py

Without --config the run folder's own config.json is used; with it, it must match.
Writes tickets/p<r>/ (model.keras, mask.npz, meta.json) and the `ticket` report section.
"""
from binaries import cli

_CONFIG, _WORKDIR = cli.define_run_flags(
    "Run folder of a finished search.",
    config_help="Optional: the run's config file; default: WORKDIR/config.json.",
    config_required=False)


@cli.main
def main():
    cli.run_pipeline(_CONFIG.value, _WORKDIR.value, phases=("draw",))


def run():
    """The console script `eb-prune`."""
    cli.run(main)


if __name__ == "__main__":
    run()
