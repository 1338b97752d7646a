r"""EB Train end to end: search the Early-Bird ticket, draw it, retrain it (one command).

    python -m binaries.eb_train --config=configs/quickstart.py --workdir=/tmp/eb_quickstart
    python -m binaries.eb_train --config=configs/vgg16_cifar10.py --workdir=/tmp/vgg \
        --config.ratios=0.3,0.5,0.7 --config.method=ns

Every run option is a config field (`--config.field=value`, see eb_tf/pipeline/config.py);
`--workdir` is the run folder: the same config resumes it, another one is an error.
"""
from binaries import cli

_CONFIG, _WORKDIR = cli.define_run_flags(
    "Run folder (created, or resumed).",
    config_help="Run config file (configs/*.py[:arg]); override fields with "
    "--config.field=value.")


@cli.main
def main():
    cli.run_pipeline(_CONFIG.value, _WORKDIR.value)  # ratios=auto: tuned in WORKDIR/tune first


def run():
    """The console script `eb-train`."""
    cli.run(main)


if __name__ == "__main__":
    run()
