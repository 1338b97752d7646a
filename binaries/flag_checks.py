"""The checks that turn a bad flag into a one-line usage error, before anything runs.

- `ConfigFileParser` wraps ml_collections' parser of `--config=path.py[:arg]`: a missing
  file, a folder, a file without `get_config` or a `get_config` that raises are one line
  (ml_collections defers some to a traceback), and the loaded config is kept so that
- `unknown_field_message` can name, for `--config.field=...` the config lacks, the
  closest fields ("did you mean config.epochs?") and where all fields are listed;
- `check_folder` / `check_file` / `register_path_validator`: a path flag names a folder
  (or file) that exists or can be made, and can be written to: checked by making an
  empty folder and removing it at once, so nothing is left behind.

Example (what `binaries.cli` does):

    flags.DEFINE_string("out", None, "The PNG to write.")
    flag_checks.register_path_validator("out", flag_checks.check_file)
"""
import difflib
import os
import re
import tempfile
from typing import Callable, Optional, Sequence

import ml_collections
from absl import flags

__all__ = ["ConfigFileParser", "check_folder", "check_file", "register_path_validator",
           "unknown_field_message"]


class ConfigFileParser(flags.ArgumentParser):
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
        if not isinstance(parser, ConfigFileParser) or parser.config is None:
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
