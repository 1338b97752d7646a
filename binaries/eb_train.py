r"""EB Train end to end: search the Early-Bird ticket, draw it, retrain it (one command).

    python -m binaries.eb_train --config=configs/quickstart.py --workdir=/tmp/eb_quickstart
    python -m binaries.eb_train --config=configs/vgg16_cifar10.py --workdir=/tmp/vgg \
        --config.ratios=0.3,0.5,0.7 --config.method=ns

Every run option is a config field (`--config.field=value`, see eb_tf/pipeline/config.py);
`--workdir` is the run folder: the same config resumes it, another one is an error.
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
    from eb_tf.pipeline import runner  # after flag parsing: --help stays fast
    try:
        runner.run(_CONFIG.value, _WORKDIR.value)
    except ValueError as e:
        raise app.UsageError(str(e)) from e


if __name__ == "__main__":
    app.run(main)
