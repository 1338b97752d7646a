"""Quiet by default: what TensorFlow prints that a user of the binaries need not read.

    with quiet.by_default(sys.argv):      # cli.run, around app.run
        app.run(main)

Unless the command line asks for absl verbosity 0 (INFO) or more (`-v 0`, `--verbosity=1`,
also in a --flagfile), before TensorFlow loads: TF's C++ log level is WARNING-free
(`TF_CPP_MIN_LOG_LEVEL=2`: errors only; a value the user set is kept), absl's Python
verbosity is WARNING (absl would raise it to INFO after parsing the flags: TF's Python
INFO lines, e.g. a checkpoint's "Sharding callback duration"), and file descriptor 2 goes
through a filter that drops the few lines of `NOISE` and forwards every other byte
unchanged. Those lines ignore the log level (TF's shared libraries log them before they
read it, or they are not TF's logging at all), or, one, is a Keras warning that blames
Keras' own progress bar. Asked for verbosity, nothing is touched.

The filter is a child process (this file, run by path with the standard library only), so
that what a crashing process wrote last (a C++ `Check failed`, faulthandler's traceback)
still comes out after an abort; complete lines are forwarded at once, a partial one (a
`\\r` progress bar) once nothing more came for 50 ms. On exit from `by_default` (a return,
SystemExit, an exception) fd 2 is restored first and the child drains the pipe, so a
traceback printed afterwards reaches the real stderr directly. The child ignores Ctrl-C
(its own session) and ends when every writer has closed the pipe.
"""
import contextlib
import os
import re
import select
import subprocess
import sys
from typing import Iterator, Optional, Sequence

__all__ = ["NOISE", "asked_verbosity", "by_default", "filtered_stderr", "forward"]

# abseil's log prefix, C++ ("I0000 00:00:1796163085.482789   13822 ") and Python ("W1201
# 22:29:24.969432 140072062663552 ") alike, and the file (a basename, or a path).
_PREFIX = r"[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ (?:\S+/)?"
# The lines the filter drops: each survives TF_CPP_MIN_LOG_LEVEL=2 and absl's WARNING
# (measured, TF 2.21 on a machine without a GPU) and says nothing about the run.
# Anchored at the line start.
NOISE = (
    # abseil C++, once per TF shared library: TF logs before it calls absl::InitializeLog.
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    r"STDERR$",
    # TF start-up (tsl/util/port.cc), logged before the log level is read.
    _PREFIX + r"port\.cc:\d+\] oneDNN custom operations are on\. ",
    # TF start-up on a machine without NVIDIA drivers (the CUDA stub): CPU only, as meant.
    _PREFIX + r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will "
    r"not be used\.$",
    # XLA's first device scan on that machine: an ERROR line for "no driver" (303, the
    # stub) only; another cuInit failure (a driver that is there and fails) stays.
    _PREFIX + r"cuda_platform\.cc:\d+\] failed call to cuInit: .*UNKNOWN ERROR \(303\)$",
    # The TFLite runtime's own logger (not TF's), once per interpreter: the default CPU
    # delegate, the one the export phase measures with.
    r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",
    # Keras (Python, WARNING), first epoch on a terminal: the progress bar waits for each
    # step's result in its batch hook, so a model as fast as the quickstart's "is slow
    # compared to the batch time". The binaries add no batch hook of their own.
    _PREFIX + r"callbacks\.py:\d+\] Callback method `on_train_batch_end` is slow compared to "
    r"the batch time ",
)

_IDLE_S = 0.05          # a partial line is forwarded once the pipe was quiet this long,
_MAX_PENDING = 1 << 16  # or once it is this long
_DRAIN_S = 2.0          # on exit, how long to wait for the filter to forward the rest
_CHILD = ("import importlib.util as u, signal, sys\n"
          "signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent closes the pipe\n"
          "s = u.spec_from_file_location('eb_tf_stderr_filter', sys.argv[1])\n"
          "m = u.module_from_spec(s)\n"
          "s.loader.exec_module(m)\n"
          "m.forward(0, 1)\n")


def asked_verbosity(argv: Sequence[str]) -> Optional[int]:
    """The absl verbosity `argv` asks for (`-v N`, `-v=N`, `--verbosity N`, `--verbosity=N`,
    also in a --flagfile; the last wins), or None if it asks for none.

    Read before absl parses the flags: TF's log level must be set before TF loads, and
    loading a config file may load it. A value absl will reject (or a flagfile it cannot
    read) is None here: absl's own error follows.
    """
    from absl import flags  # the filter child runs this file without site-packages
    try:
        args = flags.FLAGS.read_flags_from_files(list(argv[1:]), force_gnu=False)
    except flags.Error:
        return None
    value = None
    it = iter(args)
    for arg in it:
        if arg == "--":
            break
        match = re.fullmatch(r"--?(?:v|verbosity)(?:=(.*))?", arg)
        if match is None:
            continue
        raw = match.group(1) if match.group(1) is not None else next(it, None)
        value = _integer(raw)
    return value


def _integer(text: Optional[str]) -> Optional[int]:
    """absl's reading of an integer flag ("10", "0x10", "010"), or None."""
    for base in (0, 10):
        try:
            return int(text, base)
        except (TypeError, ValueError):
            pass
    return None


@contextlib.contextmanager
def by_default(argv: Sequence[str]) -> Iterator[bool]:
    """Quiet TF and absl and filter stderr for the block, unless `argv` asks for verbosity
    >= 0 (then nothing is touched). Yields whether it is quiet."""
    asked = asked_verbosity(argv)
    if asked is not None and asked >= 0:
        yield False
        return
    import logging as pylogging

    from absl import logging  # as in asked_verbosity
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads
    # The absl flag itself (absl then leaves it: not the default any more) and TF's Python
    # logger; --verbosity=-2 and --logger_levels, parsed later, still apply.
    logging.set_verbosity(logging.WARNING)
    pylogging.getLogger("tensorflow").setLevel(pylogging.WARNING)
    with filtered_stderr():
        yield True


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Sends file descriptor 2 through the `NOISE` filter for the block (POSIX; elsewhere,
    or if the filter cannot start, stderr is left as it is)."""
    if os.name != "posix" or not sys.executable:
        yield
        return
    _flush_stderr()
    read_end, write_end = os.pipe()
    real = os.dup(2)
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _CHILD, os.path.abspath(__file__)],
            stdin=read_end, stdout=real, stderr=real, start_new_session=True)
    except OSError:
        child = None
    os.close(read_end)
    if child is None:
        os.close(write_end)
        os.close(real)
        yield
        return
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        _flush_stderr()
        os.dup2(real, 2)  # the pipe's last writer here: the child sees its end
        os.close(real)
        try:
            child.wait(timeout=_DRAIN_S)
        except subprocess.TimeoutExpired:  # a process this one started still holds the
            pass                           # pipe: the child forwards for it, then ends


def _flush_stderr():
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # None, closed, or a broken pipe
        pass


def forward(read_fd: int, write_fd: int, patterns: Sequence[str] = NOISE,
            idle_s: float = _IDLE_S) -> None:
    """Copies `read_fd` to `write_fd` until end of file, less the lines a pattern matches.

    Bytes are forwarded unchanged (not decoded); a line is dropped only whole, from its
    start. A partial line is forwarded once `idle_s` passed without more input; the rest
    of that line then follows whatever it holds. If `write_fd` breaks, the input is still
    read (and dropped), so no writer blocks.
    """
    noise = [re.compile(p.encode()) for p in patterns]
    out = _Output(write_fd)
    pending, mid_line = b"", False
    while True:
        if pending and (len(pending) >= _MAX_PENDING
                        or not select.select([read_fd], [], [], idle_s)[0]):
            out.write(pending)
            pending, mid_line = b"", True
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = []
        for line in lines:
            if mid_line or not any(p.match(line) for p in noise):
                kept.append(line + b"\n")
            mid_line = False
        out.write(b"".join(kept))
    out.write(pending)


class _Output:
    """os.write of all the bytes, until the file breaks (then nothing)."""

    def __init__(self, fd: int):
        self.fd, self.broken = fd, False

    def write(self, data: bytes):
        while data and not self.broken:
            try:
                data = data[os.write(self.fd, data):]
            except InterruptedError:
                continue
            except OSError:
                self.broken = True
