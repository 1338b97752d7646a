"""Tests of binaries/quiet.py: the verbosity asked for, the stderr filter, its patterns.

The filter runs in-process on pipes (`forward`) and, as the binaries use it, around a
child interpreter's fd 2 (`filtered_stderr`, `by_default`): SystemExit, a traceback and an
abort included.
"""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from binaries import quiet
from tests.pipeline_testlib import ROOT

# The lines NOISE is for, as TF 2.21 printed them (quickstart runs, --config.export=float32
# and on a terminal).
MEASURED = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796163085.482789   13822 port.cc:153] oneDNN custom operations are on. "
    b"You may see slightly different numerical results due to floating-point round-off "
    b"errors from different computation orders. To turn them off, set the environment "
    b"variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    b"I0000 00:00:1796163085.483148   13822 cudart_stub.cc:31] Could not find cuda drivers "
    b"on your machine, GPU will not be used.",
    b"E0000 00:00:1796163089.002402   13822 cuda_platform.cc:52] failed call to cuInit: "
    b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    b"W1201 22:29:24.969432 140072062663552 callbacks.py:376] Callback method "
    b"`on_train_batch_end` is slow compared to the batch time (batch time: 0.0189s vs "
    b"`on_train_batch_end` time: 0.0373s). Check your callbacks.",
]
KEPT = [  # near misses: they say something
    b"E0000 00:00:1796163089.002402   13822 cuda_platform.cc:52] failed call to cuInit: "
    b"CUDA_ERROR_SYSTEM_DRIVER_MISMATCH: system has unsupported display driver / cuda "
    b"driver combination",
    b"E0000 00:00:1796163085.482789   13822 port.cc:153] something else went wrong",
    b"F0000 00:00:1796163085.482789   13822 cuda_platform.cc:52] Check failed: ok",
    b"/x/cli.py:335: HealthWarning: ticket p=0.5: test accuracy 0.0938 is at chance level",
    b"Traceback (most recent call last):",
    b"  prefix INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    b"W1201 22:29:24.969432 140072062663552 callbacks.py:376] Callback method "
    b"`on_train_batch_begin` is slow compared to the batch time (batch time: 0.0189s vs "
    b"`on_train_batch_begin` time: 0.0373s). Check your callbacks.",
    b"W1201 22:29:24.969432 140072062663552 data_adapter.py:1234] Your input ran out of data",
    b"FATAL Flags parsing error: flag --config=x.py: no such config file 'x.py'",
]


def _filtered(data: bytes, close_after: float = 0.0) -> bytes:
    """`quiet.forward` of `data` (written in one go) to a file, until end of input."""
    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryFile() as out:
        thread = threading.Thread(target=quiet.forward, args=(read_fd, out.fileno()))
        thread.start()
        os.write(write_fd, data)
        time.sleep(close_after)
        os.close(write_fd)
        thread.join(10)
        assert not thread.is_alive()
        os.close(read_fd)
        out.seek(0)
        return out.read()


def test_every_noise_pattern_drops_its_measured_line_and_nothing_close_to_it():
    assert len(quiet.NOISE) == len(MEASURED)
    for line in MEASURED:
        assert _filtered(line + b"\n") == b"", line
    kept = b"".join(line + b"\n" for line in KEPT)
    assert _filtered(kept) == kept


def test_forward_keeps_every_other_byte_in_order():
    data = (b"first\n" + MEASURED[0] + b"\n" + b"\xff\xfe not utf-8\r\n" + MEASURED[1]
            + b"\n\n" + MEASURED[4] + b"\nno newline at the end")
    assert _filtered(data) == b"first\n\xff\xfe not utf-8\r\n\nno newline at the end"


def test_forward_keeps_a_line_longer_than_it_holds_whole():
    line = b"y" * 200000 + b" " + MEASURED[4] + b"\n"
    assert _filtered(line) == line


def test_forward_passes_a_partial_line_on_after_a_pause_then_the_rest_of_it():
    read_fd, write_fd = os.pipe()
    out_read, out_write = os.pipe()
    thread = threading.Thread(target=quiet.forward, args=(read_fd, out_write))
    thread.start()
    os.write(write_fd, b"\r 50% |#####     |")  # a progress bar: no newline yet
    assert os.read(out_read, 100) == b"\r 50% |#####     |"  # blocks until it is passed on
    os.write(write_fd, MEASURED[4] + b"\n")  # the rest of the line shown: kept whole
    os.close(write_fd)
    thread.join(10)
    os.close(out_write)
    assert os.read(out_read, 1000) == MEASURED[4] + b"\n"
    os.close(read_fd)
    os.close(out_read)


def test_forward_drains_its_input_when_the_output_is_gone():
    read_fd, write_fd = os.pipe()
    out_read, out_write = os.pipe()
    os.close(out_read)  # writing to out_write: EPIPE (Python ignores SIGPIPE)
    thread = threading.Thread(target=quiet.forward, args=(read_fd, out_write))
    thread.start()
    for _ in range(64):
        os.write(write_fd, b"x" * 4095 + b"\n")  # 256 KiB: more than a pipe holds
    os.close(write_fd)
    thread.join(10)
    assert not thread.is_alive()
    os.close(read_fd)
    os.close(out_write)


@pytest.mark.parametrize("args, expected", [
    ((), None),
    (("--workdir=/tmp/w", "--config.verbose=1"), None),
    (("-v", "1"), 1),
    (("-v=0",), 0),
    (("--verbosity=2",), 2),
    (("--verbosity", "0"), 0),
    (("-verbosity=1",), 1),
    (("--v=1",), 1),
    (("-v", "-1"), -1),
    (("-v", "1", "--verbosity=-2"), -2),  # the last wins, as in absl
    (("--", "-v", "1"), None),  # after --: arguments, not flags
    (("-v", "x"), None),  # absl's error follows
    (("-v",), None),
    (("--verbosity=0x1",), 1),
])
def test_asked_verbosity_reads_the_flag_as_absl_does(args, expected):
    assert quiet.asked_verbosity(["prog", *args]) == expected


def test_asked_verbosity_reads_flagfiles(tmp_path):
    (tmp_path / "flags").write_text("--workdir=/tmp/w\n--verbosity=1\n")
    assert quiet.asked_verbosity(["prog", f"--flagfile={tmp_path}/flags"]) == 1
    assert quiet.asked_verbosity(["prog", f"--flagfile={tmp_path}/missing"]) is None


_CHILD = """
import os, sys
from binaries import quiet
with quiet.filtered_stderr():
    os.write(2, NOISE + b"\\n")
    sys.stderr.write("python line\\n")
    os.write(2, b"C line\\n")
    print("stdout line", flush=True)
    END
"""


def _run_child(end: str, *args: str, env=None) -> subprocess.CompletedProcess:
    code = _CHILD.replace("NOISE", repr(MEASURED[1])).replace("END", end)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("end, code", [("pass", 0), ("raise SystemExit(3)", 3),
                                       ("raise SystemExit('usage: one line')", 1)])
def test_filtered_stderr_drops_the_noise_and_keeps_the_rest_on_any_exit(end, code):
    proc = _run_child(end)
    assert proc.returncode == code, proc.stderr
    expected = b"python line\nC line\n" + (b"usage: one line\n" if code == 1 else b"")
    assert proc.stderr == expected
    assert proc.stdout == b"stdout line\n"


def test_filtered_stderr_lets_a_traceback_through_whole():
    proc = _run_child("raise RuntimeError('boom ' + 'x' * 100000)")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[:3] == [b"python line", b"C line", b"Traceback (most recent call last):"]
    assert lines[-1] == b"RuntimeError: boom " + b"x" * 100000


def test_filtered_stderr_passes_on_what_a_process_wrote_before_it_aborted():
    last = b"F0000 00:00:1.2 7 x.cc:1] Check failed: last words\n"  # a C++ CHECK, then abort
    proc = _run_child(f"os.write(2, {last!r}); os.abort()")
    assert proc.returncode == -signal.SIGABRT
    assert proc.stderr == b"python line\nC line\n" + last


_BY_DEFAULT = """
import logging, os, sys
import absl.logging  # defines --verbosity, as absl.app does
from absl import flags
from binaries import quiet
with quiet.by_default(sys.argv) as quieted:
    os.write(2, NOISE + b"\\n")
    print(quieted, os.environ.get("TF_CPP_MIN_LOG_LEVEL"),
          flags.FLAGS["verbosity"].using_default_value, logging.getLogger("tensorflow").level)
"""


# quiet: WARNING, not absl's default (so app.run does not raise it to INFO); 30: WARNING
@pytest.mark.parametrize("args, level, expected", [
    ((), None, "True 2 False 30"),
    (("--verbosity=-2",), None, "True 2 False 30"),  # absl applies it when it parses
    ((), "0", "True 0 False 30"),  # the user's own level is kept
    (("-v", "0"), None, "False None True 0"),
    (("--verbosity=1",), "1", "False 1 True 0"),
])
def test_by_default_is_quiet_unless_verbosity_0_or_more_is_asked(args, level, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    code = _BY_DEFAULT.replace("NOISE", repr(MEASURED[0]))
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == expected.split()
    quieted = expected.startswith("True")
    assert proc.stderr == ("" if quieted else MEASURED[0].decode() + "\n")
