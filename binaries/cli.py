"""What every binary shares: the run flags, the absl `main` wrapper, the run config.

    from binaries import cli

    _CONFIG, _WORKDIR = cli.define_run_flags("Run folder (created, or resumed).",
                                             config_help="Run config file ...")

    @cli.main
    def main():                       # no argv: extra arguments are a UsageError
        cli.run_pipeline(_CONFIG.value, _WORKDIR.value, phases=("search",))

    def run():                        # the console script (setup.py), = `python -m`
        cli.run(main)

Only absl and ml_collections are imported here; the library is imported inside the
functions that need it, after flag parsing, so `--help` stays fast.
"""
import functools
import os
import sys
from typing import Callable, NamedTuple, Optional, Sequence

from absl import app, flags
from ml_collections import config_flags

# Flags defined by define_run_flags belong to the binary that calls it (absl's --help
# lists a binary's own flags), not to this module.
flags.disclaim_key_flags()

__all__ = ["RunFlags", "define_run_flags", "main", "run", "resolve_config", "run_pipeline"]


class RunFlags(NamedTuple):
    """The holders of `--config` (None when not defined) and `--workdir`."""
    config: Optional[flags.FlagHolder]
    workdir: flags.FlagHolder


def define_run_flags(workdir_help: str, config_help: Optional[str] = None,
                     config_required: bool = True,
                     flag_values: flags.FlagValues = flags.FLAGS) -> RunFlags:
    """Defines `--workdir` (required) and, given `config_help`, `--config`.

    `--config` is an ml_collections config file (`path.py[:arg]`, fields overridden with
    `--config.field=value`; locked, so a misspelt field is an error), required unless
    `config_required=False` (then None when omitted: see `resolve_config`).
    """
    config = None
    required = ["workdir"]
    if config_help is not None:
        config = config_flags.DEFINE_config_file("config", None, config_help,
                                                 flag_values=flag_values, lock_config=True)
        if config_required:
            required.insert(0, "config")
    workdir = flags.DEFINE_string("workdir", None, workdir_help, flag_values=flag_values)
    flags.mark_flags_as_required(required, flag_values=flag_values)
    return RunFlags(config, workdir)


def main(body: Callable[[], object]) -> Callable[[Sequence[str]], object]:
    """Decorator: an absl `main(argv)` from a body that takes no arguments.

    The wrapper rejects positional arguments and turns a ValueError of the body (the
    library's error for a bad value) into `app.UsageError` with the same message: absl
    prints it without a traceback and exits with status 1.
    """
    @functools.wraps(body)
    def wrapped(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        try:
            return body()
        except ValueError as e:
            raise app.UsageError(str(e)) from e
    return wrapped


def run(main_fn: Callable[[Sequence[str]], object]) -> None:
    """`app.run(main_fn)`, for `python -m binaries.X` and the console script `eb-x` alike.

    A console script's `__main__` is the wrapper pip writes, so absl's `--help` would
    show neither the binary's docstring nor its flags; they are lent to it here.
    """
    module = sys.modules[main_fn.__module__]
    entry = sys.modules["__main__"]
    if module is not entry:
        entry.__doc__ = module.__doc__
        for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main_fn)


def resolve_config(config, workdir: str):
    """The config a pipeline binary runs in `workdir`.

    None (`--config` omitted): the run folder's own config (ValueError if `workdir` is
    not a run folder). `ratios='auto'`: tuned first in `workdir/tune` (resumable) by
    `eb_tf.tuning.resolve_auto`, which returns the chosen config. Else `config` itself.
    """
    from eb_tf.pipeline import run_dir  # late: --help stays fast
    if config is None:
        return run_dir.RunDir.existing(workdir).cfg
    from eb_tf import tuning  # late: brings keras_tuner along
    if tuning.is_auto(config):
        return tuning.resolve_auto(config, os.path.join(workdir, "tune"), splits=None)
    return config


def run_pipeline(config, workdir: str, phases: Optional[Sequence[str]] = None) -> dict:
    """`eb_tf.pipeline.run` on `resolve_config(config, workdir)`; all phases by default."""
    from eb_tf import pipeline  # late: --help stays fast
    config = resolve_config(config, workdir)
    if phases is None:
        return pipeline.run(config, workdir)
    return pipeline.run(config, workdir, phases=tuple(phases))
