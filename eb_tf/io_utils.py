"""Atomic file output: a file is either absent or complete, never half-written.

Every writer stages its output in a temporary file or folder beside the target (same
filesystem) and moves it into place with `os.replace`, so a killed run or a failing
writer leaves no partial file behind.

Example:

    from eb_tf import io_utils
    io_utils.atomic_write_json("run/report.json", {"schema_version": 1})
    io_utils.atomic_save_model(model, "run/final.keras")
    with io_utils.atomic_dir("run/tickets/p0.5") as tmp:
        ...  # write files into tmp; they appear together when the block ends
"""
import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "read_json",
           "atomic_dir", "atomic_save_model", "atomic_save_weights"]


def _parent(path: str) -> str:
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create the folder {parent!r} for {path!r}: {e}") from e
    return parent


@contextlib.contextmanager
def _staged_file(path: str) -> Iterator[str]:
    """Yields a temp path beside `path`; moves it onto `path` if the block succeeds."""
    parent = _parent(path)
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        staged = os.path.join(tmp_dir, os.path.basename(path))
        yield staged
        if not os.path.exists(staged):
            raise OSError(f"writer produced no file for {path!r}")
        os.replace(staged, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def atomic_write_bytes(path: str, data: bytes) -> str:
    """Writes `data` to `path` atomically; returns `path`."""
    with _staged_file(path) as staged:
        with open(staged, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def atomic_write_text(path: str, text: str) -> str:
    """Writes `text` (UTF-8) to `path` atomically; returns `path`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj: Any) -> str:
    """Writes `obj` as indented, key-sorted JSON to `path` atomically; returns `path`."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default)
                             + "\n")


def _json_default(obj):
    import numpy as np  # local: keeps this module importable without NumPy at import time
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable: {obj!r}")


def read_json(path: str) -> Any:
    """Reads a JSON file; a clear error names the file if it is missing or corrupt."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path!r}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path!r} is not valid JSON ({e}); delete it to start over") from e


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yields a temp folder; on success it replaces the folder `path` as a whole."""
    parent = _parent(path)
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        yield tmp_dir
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=".old-", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp_dir, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def atomic_save_model(model, path: str) -> str:
    """`model.save(path)` (a `.keras` file) staged in a temp folder, then moved."""
    if not path.endswith(".keras"):
        raise ValueError(f"atomic_save_model writes the .keras format; got path {path!r}")
    with _staged_file(path) as staged:
        model.save(staged)
    return path


def atomic_save_weights(model, path: str) -> str:
    """`model.save_weights(path)` (`.weights.h5` / `.h5`) staged, then moved."""
    if not path.endswith(".h5"):
        raise ValueError(f"atomic_save_weights writes HDF5 weights; path must end in .h5, "
                         f"got {path!r}")
    with _staged_file(path) as staged:
        model.save_weights(staged)
    return path
