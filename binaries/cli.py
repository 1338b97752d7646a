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
anything runs; a ValueError of the body is a usage error (`main`).

Only absl and ml_collections are imported here; the library is imported inside the
functions that need it, after flag parsing, so `--help` stays fast.
"""
import difflib
import functools
import os
import re
import sys
import tempfile
from typing import Callable, NamedTuple, Optional, Sequence

import ml_collections
from absl import app, flags
from ml_collections import config_flags

# Flags defined by define_run_flags belong to the binary that calls it (absl's --help
# lists a binary's own flags), not to this module.
flags.disclaim_key_flags()

__all__ = ["RunFlags", "RUN_FIELDS", "define_run_flags", "check_folder", "check_file",
           "register_path_validator", "unknown_field_message", "main", "run",
           "resolve_config", "run_pipeline"]

# Where the fields of a run config are listed (the hint of an unknown field).
RUN_FIELDS = 'python -c "from eb_tf.pipeline import config; print(config.describe())"'


class RunFlags(NamedTuple):
    """The holders of `--config` (None when not defined) and `--workdir`."""
    config: Optional[flags.FlagHolder]
    workdir: flags.FlagHolder


class _ConfigFileParser(flags.ArgumentParser):
    """ml_collections' parser of `--config=path.py[:arg]`, with errors of one line.

    A file that cannot be loaded is an error at once (ml_collections defers it to the
    first use, or to a traceback under `--config.field=...`), and `get_config`'s
    ValueError is its message (not a traceback in a string). The loaded config is kept
    for `unknown_field_message`.
    """

    def __init__(self, parser: flags.ArgumentParser, fields_help: str):
        self._parser = parser
        self.fields_help = fields_help
        self.config = None

    def parse(self, path):
        self.config = None
        file = path.split(":", 1)[0]
        if not os.path.isfile(file):  # absl: "flag --config=PATH: <this message>"
            raise ValueError(f"{file!r} is a folder, not a config file" if os.path.isdir(file)
                             else f"no such config file {file!r} (looked in {os.getcwd()})")
        try:
            config = self._parser.parse(path)
        except OSError as e:
            raise ValueError(f"cannot read the config file: {e}") from None
        except AttributeError as e:
            if e.name != "get_config":
                raise  # a bug in the config file: its traceback
            raise ValueError(f"{file!r} is not a config file: it has no get_config(arg) "
                             "function") from None
        except (TypeError, ValueError) as e:  # ml_collections: "Error whilst parsing ..."
            error = e.__context__ or e
            text = " ".join(str(error).split())
            raise ValueError(text if isinstance(error, ValueError)
                             else f"{type(error).__name__}: {text}") from None
        self.config = config
        return config

    def flag_type(self):
        return self._parser.flag_type()


def define_run_flags(workdir_help: str, config_help: Optional[str] = None,
                     config_required: bool = True, fields_help: str = RUN_FIELDS,
                     flag_values: flags.FlagValues = flags.FLAGS) -> RunFlags:
    """Defines `--workdir` (required, `check_folder`) and, given `config_help`, `--config`.

    `--config` is an ml_collections config file (`path.py[:arg]`, fields overridden with
    `--config.field=value`; locked, so a misspelt field is an error whose message points
    to `fields_help`), required unless `config_required=False` (then None when omitted:
    see `resolve_config`).
    """
    config = None
    required = ["workdir"]
    if config_help is not None:
        config = config_flags.DEFINE_config_file("config", None, config_help,
                                                 flag_values=flag_values, lock_config=True)
        flag = flag_values["config"]
        # Keywords: absl caches (and shares) a parser built from positional arguments.
        flag.parser = _ConfigFileParser(parser=flag.parser, fields_help=fields_help)
        if config_required:
            required.insert(0, "config")
    workdir = flags.DEFINE_string("workdir", None, workdir_help, flag_values=flag_values)
    flags.mark_flags_as_required(required, flag_values=flag_values)
    flags.register_validator("workdir", _valid_workdir, flag_values=flag_values)
    return RunFlags(config, workdir)


def _valid_workdir(path: Optional[str]) -> bool:
    if path is not None:  # None: absl's required-flag error
        check_folder(path)
    return True


def check_folder(path: str) -> None:
    """Raises flags.ValidationError unless `path` is a writable folder or can be made one.

    Writing is tried with an empty folder, removed at once: nothing is left behind.
    """
    if not path.strip():
        raise flags.ValidationError("must name a folder")
    path = os.path.abspath(path)
    if os.path.isdir(path):
        _check_writable(path)
    elif os.path.lexists(path):
        raise flags.ValidationError("exists and is not a folder")
    else:
        _check_creatable(path)


def check_file(path: str) -> None:
    """Raises flags.ValidationError unless a file can be written at `path`."""
    if not path.strip():
        raise flags.ValidationError("must name a file")
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise flags.ValidationError("is a folder, not a file")
    _check_creatable(path)


def _check_creatable(path: str) -> None:
    """The nearest existing folder above `path` must be a writable folder."""
    parent = os.path.dirname(path)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise flags.ValidationError(f"{parent!r} is a file, not a folder")
    _check_writable(parent)


def _check_writable(folder: str) -> None:
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=folder))
    except OSError as e:
        raise flags.ValidationError(f"cannot write in {folder!r}: {e.strerror}") from None


def register_path_validator(name: str, check: Callable[[str], None],
                            flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Checks flag `name` with `check_folder` or `check_file` after parsing (a flag error
    naming it and its value); None and "" (not given: the binary's default) pass."""
    def validate(path):
        if path:
            check(path)
        return True
    flags.register_validator(name, validate, flag_values=flag_values)


def unknown_field_message(argv: Sequence[str],
                          flag_values: flags.FlagValues = flags.FLAGS) -> Optional[str]:
    """The one-line error for the first `--config.field=...` of `argv` that the loaded config
    lacks (the closest fields, where they are listed), or None if there is none."""
    argv = flag_values.read_flags_from_files(list(argv), force_gnu=False)
    for name in list(flag_values):
        parser = flag_values[name].parser
        if not isinstance(parser, _ConfigFileParser) or parser.config is None:
            continue
        fields = _field_paths(parser.config)
        for arg in argv[1:]:
            match = re.match(rf"^--?(?:no)?{re.escape(name)}\.([^=]+)", arg)
            if match is None or match.group(1) in fields:
                continue
            path = match.group(1)
            close = _closest(path, fields)
            hint = (f" (did you mean {' or '.join(f'{name}.{c}' for c in close)}?)"
                    if close else "")
            return (f"flag {arg}: the config has no field {path!r}{hint}; its fields: "
                    f"{parser.fields_help}")
    return None


def _closest(name: str, candidates, n: int = 3, margin: float = 0.1) -> list:
    """The names closest to `name` (difflib), at most `n`, none far behind the best."""
    scored = sorted(((difflib.SequenceMatcher(None, name, c).ratio(), c) for c in candidates),
                    reverse=True)
    best = scored[0][0] if scored else 0.0
    return [c for score, c in scored[:n] if score >= max(0.6, best - margin)]


def _field_paths(config, prefix: str = "") -> set:
    """'a', 'b', 'b.c', ...: every field of a ConfigDict, nested ones dotted."""
    paths = set()
    for key, value in config.items():
        paths.add(prefix + key)
        if isinstance(value, ml_collections.ConfigDict):
            paths |= _field_paths(value, f"{prefix}{key}.")
    return paths


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
    """
    module = sys.modules[main_fn.__module__]
    entry = sys.modules["__main__"]
    if module is not entry:
        entry.__doc__ = module.__doc__
        for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main_fn, flags_parser=_parse_flags_with_usage)


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
