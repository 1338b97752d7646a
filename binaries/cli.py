"""What every binary shares: the run flags, the absl `main` wrapper, the run config.

    from binaries import cli

    _CONFIG, _WORKDIR = cli.define_run_flags("Run folder (created, or resumed).",
                                             config_help="Run config file ...")

    @cli.main
    def main():                       # no argv: extra arguments are a UsageError
        cli.run_pipeline(_CONFIG.value, _WORKDIR.value, phases=("search",))

    def run():                        # the console script (setup.py), = `python -m`
        cli.run(main)

Bad input is one line, never a traceback: a config file that cannot be loaded and an
unknown config field (`--config.nonsense=1`: the closest fields, where they are listed)
are flag errors (`FATAL Flags parsing error: ...`, exit 1), as absl's own are; so is a
`--workdir` that cannot be a folder (a file, under a file, not writable), checked before
anything runs (`binaries.flag_checks`); a ValueError of the body is a usage error
(`main`).

Quiet by default (`quiet.by_default`, around app.run): TF's C++ and absl's Python INFO
logs off and TF's start-up lines filtered from stderr, unless `-v 0` (`--verbosity=0`) or
more is given. Keras shows a progress bar per epoch on a terminal and one line per epoch
otherwise (`keras_progress`), unless `--config.verbose=N` says which.

Only absl and ml_collections are imported here; the library is imported inside the
functions that need it, after flag parsing, so `--help` stays fast.
"""
import dataclasses
import functools
import os
import re
import sys
import warnings
from typing import Callable, NamedTuple, Optional, Sequence

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from binaries import flag_checks, quiet
from binaries.flag_checks import (check_file, check_folder, register_path_validator,
                                  unknown_field_message)

# Flags defined by define_run_flags belong to the binary that calls it (absl's --help
# lists a binary's own flags), not to this module.
flags.disclaim_key_flags()

__all__ = ["RunFlags", "RUN_FIELDS", "define_run_flags", "describe_run_config", "check_folder", "check_file",
           "register_path_validator", "unknown_field_message", "main", "run",
           "resolve_config", "keras_progress", "run_pipeline"]

# Where the fields of a run config are listed (the hint of an unknown field).
RUN_FIELDS = 'python -c "from eb_tf.pipeline import config; print(config.describe())"'


class RunFlags(NamedTuple):
    """The holders of `--config` (None when not defined) and `--workdir`."""
    config: Optional[flags.FlagHolder]
    workdir: flags.FlagHolder


def define_run_flags(workdir_help: str, config_help: Optional[str] = None,
                     config_required: bool = True, fields_help: str = RUN_FIELDS,
                     describe: Optional[Callable[[], str]] = None,
                     flag_values: flags.FlagValues = flags.FLAGS) -> RunFlags:
    """Defines `--workdir` (required, `check_folder`) and, given `config_help`, `--config`.

    `--config` is an ml_collections config file (`path.py[:arg]`, fields overridden with
    `--config.field=value`; locked, so a misspelt field is an error whose message points
    to `fields_help`), required unless `config_required=False` (then None when omitted:
    see `resolve_config`). With `--config` comes `--describe_config`, which prints every
    field with its default and help (`describe()`, default: the run config's) and exits.
    """
    config = None
    required = ["workdir"]
    if config_help is not None:
        config = config_flags.DEFINE_config_file(
            "config", None, config_help + " Its fields: --describe_config.",
            flag_values=flag_values, lock_config=True)
        flags.DEFINE_bool("describe_config", False, "Print every config field with its "
                          "default and help, then exit.", flag_values=flag_values)
        _DESCRIBE[id(flag_values)] = describe or describe_run_config
        flag = flag_values["config"]
        # Keywords: absl caches (and shares) a parser built from positional arguments.
        flag.parser = flag_checks.ConfigFileParser(parser=flag.parser, fields_help=fields_help)
        if config_required:
            required.insert(0, "config")
    workdir = flags.DEFINE_string("workdir", None, workdir_help, flag_values=flag_values)
    flags.mark_flags_as_required(required, flag_values=flag_values)
    flags.register_validator("workdir", _valid_workdir, flag_values=flag_values)
    return RunFlags(config, workdir)


_DESCRIBE = {}  # FlagValues -> what --describe_config prints


def describe_run_config() -> str:
    """The run config's fields: `name = default: help`, one per line (eb_tf.pipeline.config)."""
    from eb_tf.pipeline import config  # late: --help stays fast
    return config.describe()


def _describe_and_exit(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS):
    """`--describe_config` needs no other flag (not even the required ones): handled first."""
    asked = [a for a in argv[1:] if a.split("=")[0] in ("--describe_config", "-describe_config")]
    if asked and id(flag_values) in _DESCRIBE and asked[-1].split("=", 1)[-1].lower() not in (
            "false", "0"):
        print(_DESCRIBE[id(flag_values)]())
        sys.exit(0)


def _valid_workdir(path: Optional[str]) -> bool:
    if path is not None:  # None: absl's required-flag error
        check_folder(path)
    return True


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
    show neither the binary's docstring nor its flags; they are lent to it here. An
    unknown config field is a flag error (`unknown_field_message`), not a traceback.
    Quiet unless `-v 0` or more is given (`quiet.by_default`: before TF loads, as the
    config file may load it). eb_tf's own warnings (a run's `HealthWarning`s) print as
    one line each, `HealthWarning: message`, without Python's file:line and source line.
    """
    module = sys.modules[main_fn.__module__]
    entry = sys.modules["__main__"]
    if module is not entry:
        entry.__doc__ = module.__doc__
        for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    warnings.showwarning = _one_line_for_eb_tf(warnings.showwarning)
    with quiet.by_default(sys.argv):
        _describe_and_exit(sys.argv)
        app.run(main_fn, flags_parser=_parse_flags_with_usage)


def _one_line_for_eb_tf(show):
    """A `warnings.showwarning` that prints eb_tf's warnings as `Category: message`."""
    def one_line(message, category, filename, lineno, file=None, line=None):
        if not category.__module__.startswith("eb_tf."):
            return show(message, category, filename, lineno, file, line)
        print(f"{category.__name__}: {message}", file=file or sys.stderr, flush=True)
        return None
    return one_line


def _parse_flags_with_usage(argv):
    """absl's parser, and ml_collections' error for an unknown field as absl's flag error."""
    try:
        return app.parse_flags_with_usage(argv)  # a flags.Error: one line, exit 1
    except (AttributeError, KeyError):  # ml_collections: a field the locked config lacks
        message = unknown_field_message(argv)
        if message is None:
            raise
    sys.stderr.write(f"FATAL Flags parsing error: {message}\n"
                     "Pass --helpshort or --helpfull to see help on flags.\n")
    sys.exit(1)


def resolve_config(config, workdir: str):
    """The config a pipeline binary runs in `workdir`.

    None (`--config` omitted): the run folder's own config (ValueError if `workdir` is
    not a run folder). `ratios='auto'`: tuned first in `workdir/tune` (resumable) by
    `eb_tf.tuning.resolve_auto`, which returns the chosen config. Else `config` itself.
    Either way with `keras_progress` (a field that leaves the run folder's hash alone).
    """
    from eb_tf.pipeline import run_dir  # late: --help stays fast
    if config is None:
        return keras_progress(run_dir.RunDir.existing(workdir).cfg)
    config = keras_progress(config)
    from eb_tf import tuning  # late: brings keras_tuner along
    if tuning.is_auto(config):
        return tuning.resolve_auto(config, os.path.join(workdir, "tune"), splits=None)
    return config


def keras_progress(config, argv: Optional[Sequence[str]] = None,
                   tty: Optional[bool] = None):
    """`config` (a ConfigDict or RunConfig) with Keras' display chosen by the terminal.

    The config's `verbose` says whether Keras shows progress (0: silent, kept); stdout says
    how: a progress bar per epoch on a terminal (1), one line per epoch otherwise (2; a
    bar in a log file is a line every 50 ms). A `--config.verbose=N` on the command line
    (`argv`, default sys.argv; flagfiles included) is kept as given. `tty`: default
    `sys.stdout.isatty()`. A changed config is a copy; an unchanged one is `config`.
    """
    argv = sys.argv if argv is None else argv
    if not config.verbose or any(re.match(r"--?config\.verbose(=|$)", arg)
                                 for arg in _expanded(argv)):
        return config
    verbose = 1 if (sys.stdout.isatty() if tty is None else tty) else 2
    if config.verbose == verbose:
        return config
    if isinstance(config, ml_collections.ConfigDict):
        config = config.copy_and_resolve_references()
        config.verbose = verbose
        return config
    return dataclasses.replace(config, verbose=verbose)


def _expanded(argv: Sequence[str]) -> list:
    """argv[1:] with its --flagfile's read in (as given, if one cannot be read)."""
    try:
        return flags.FLAGS.read_flags_from_files(list(argv[1:]), force_gnu=False)
    except flags.Error:
        return list(argv[1:])


def run_pipeline(config, workdir: str, phases: Optional[Sequence[str]] = None) -> dict:
    """`eb_tf.pipeline.run` on `resolve_config(config, workdir)`; all phases by default."""
    from eb_tf import pipeline  # late: --help stays fast
    config = resolve_config(config, workdir)
    if phases is None:
        return pipeline.run(config, workdir)
    return pipeline.run(config, workdir, phases=tuple(phases))
