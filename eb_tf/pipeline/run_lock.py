"""One process per run folder: an exclusive OS lock on `WORKDIR/.lock`.

`hold(workdir)` takes an exclusive `fcntl.flock` on the folder's lock file for as long
as the run works in it. The kernel releases the lock when the holder exits, however it
exits (`kill -9` included), so a killed run resumes without any clean-up; a second
process that wants the folder while the first still runs gets `RunFolderLocked`, a
ValueError naming the holder (host, PID, start time, written into the lock file). Under
multi-worker training only the chief works in the real folder, so only it holds the lock.
A folder that `hold` created and that is still empty but for the lock when the run
stops (a run that failed before writing anything) is removed again.

Example:

    from eb_tf.pipeline import run_lock
    with run_lock.hold("/tmp/eb_run"):
        ...   # train, write report.json
"""
import contextlib
import datetime
import json
import os
import shutil
import socket
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked there
    fcntl = None

__all__ = ["LOCK_FILE", "RunFolderLocked", "hold", "holder"]

LOCK_FILE = ".lock"


class RunFolderLocked(ValueError):
    """Another process holds the run folder."""


def holder(workdir: str) -> dict:
    """What the lock file says of its last holder ({} if it says nothing)."""
    try:
        with open(os.path.join(workdir, LOCK_FILE), encoding="utf-8") as f:
            return json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[str]:
    """Holds the exclusive lock of `workdir` (created if missing) and yields its path.

    Raises:
      RunFolderLocked: another process holds it; the message names that process.
      ValueError: `workdir` cannot be a folder (a file is in the way, no permission).
    """
    if not str(workdir).strip():
        raise ValueError("--workdir is empty: name a run folder, e.g. --workdir=/tmp/eb_run")
    workdir = os.path.abspath(workdir)
    created = not os.path.exists(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(os.path.join(workdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except (NotADirectoryError, FileExistsError, PermissionError) as e:
        raise ValueError(f"--workdir {workdir!r} cannot be a run folder: {e.strerror} "
                         f"({e.filename}); choose another path") from None
    try:
        _lock(fd, workdir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({
            "host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().isoformat(timespec="seconds")}).encode(), 0)
        yield workdir
    finally:
        os.close(fd)  # releases the lock
        if created and os.path.isdir(workdir) and set(os.listdir(workdir)) <= {LOCK_FILE}:
            shutil.rmtree(workdir, ignore_errors=True)


def _lock(fd: int, workdir: str) -> None:
    if fcntl is None:  # pragma: no cover
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = holder(workdir)
        described = (f"PID {who.get('pid')} on {who.get('host')}, started {who.get('started')}"
                     if who else "another process")
        raise RunFolderLocked(
            f"--workdir {workdir!r} is in use by another eb_tf run ({described}); wait for "
            "it to finish or stop it (its lock goes when it exits), or use another "
            "--workdir") from None
