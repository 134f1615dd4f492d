"""Framework chatter silenced at its source, without hiding anything else.

TensorFlow's C++ runtime writes start-up notices straight to file descriptor 2, before its own
log level is read: ``TF_CPP_MIN_LOG_LEVEL=3`` leaves the oneDNN notice and absl's pre-init line,
and the one variable that removes them, ``TF_ENABLE_ONEDNN_OPTS=0``, changes numerics (it is
never set here). With oneDNN on, every graph TensorFlow builds in float64 adds "Not handling
type DT_DOUBLE" warnings (72 in one float64 check). Measured on TensorFlow 2.21 (a float64
check, oneDNN on), the lines and where they come from:

=====================================================  ==========================================
line                                                   source
=====================================================  ==========================================
``WARNING: All log messages before absl::Initialize``  absl, at TensorFlow's import and again at
``Log() is called are written to STDERR``              its first op (×2)
``I… port.cc:153] oneDNN custom operations are on…``   TensorFlow import and first op (×2)
``I… cpu_feature_guard.cc:227] This TensorFlow binary  TensorFlow import (×1, and its second line
is optimized to use available CPU instructions…``      ``To enable the following instructions: …
                                                       rebuild TensorFlow with the appropriate
                                                       compiler flags.``)
``W… util.cc:163] Not handling type DT_DOUBLE``        oneDNN's graph rewrite, per float64 graph
                                                       (×72 in one float64 check)
``Unable to register cuDNN/cuFFT/cuBLAS factory…``,    TensorFlow import on a machine with CUDA
``computation placer already registered…``,            libraries (GPU builds)
``TF-TRT Warning: Could not find TensorRT``,
``Could not find cuda drivers on your machine…``
=====================================================  ==========================================

:func:`filtered_stderr` redirects descriptor 2 into a temporary file (writers never block) and
a thread forwards every line that is not chatter (:data:`CHATTER`) to the real stderr as it
comes, so our warnings and real errors still show, in order. :func:`framework_import` is that
around importing Keras and its backend and their first op, plus a narrow filter on the
``tensorflow`` Python logger for its "triggered tf.function retracing" warnings
(:func:`silence_python_chatter`), which are Python logging, not descriptor-level.

Inside :func:`filtered_stderr`, descriptor 2 is a file: ``sys.stderr.isatty()`` is False there,
so decide about progress bars before entering it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Final

# absl/glog's prefix: severity, date, time, thread id, file:line]
_ABSL: Final = r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] "
CHATTER: Final = tuple(
    re.compile(pattern)
    for pattern in (
        r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
        r"STDERR$",
        _ABSL + r"oneDNN custom operations are on\. ",
        _ABSL + r"This TensorFlow binary is optimized to use available CPU instructions",
        r"^To enable the following instructions: .*, in other operations, rebuild TensorFlow "
        r"with the appropriate compiler flags\.$",
        _ABSL + r"Not handling type DT_DOUBLE$",
        _ABSL + r"Unable to register (cuDNN|cuFFT|cuBLAS) factory",
        _ABSL + r"computation placer already registered",
        _ABSL + r"TF-TRT Warning: Could not find TensorRT$",
        _ABSL + r"Could not find cuda drivers on your machine, GPU will not be used\.$",
    )
)
# The tensorflow Python logger's chatter (logging records, not descriptor 2).
PYTHON_CHATTER: Final = {"tensorflow": re.compile(r"triggered tf\.function retracing")}
_POLL_SECONDS: Final = 0.05


def is_chatter(line: str) -> bool:
    """Whether ``line`` (without its line end) is known framework chatter."""
    return any(p.search(line) for p in CHATTER)


class _Forwarder:
    """Reads what descriptor 2 wrote into ``source`` (from its own offset, so the writers'
    shared offset is untouched) and writes every line but chatter to ``target``."""

    def __init__(self, source: int, target: int) -> None:
        self.source, self.target = source, target
        self.offset = 0
        self.pending = b""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stderr-filter", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self.pump():
                self.stop.wait(_POLL_SECONDS)
        self.pump()

    def pump(self) -> bool:
        """Forward what is new; whether there was anything."""
        data = os.pread(self.source, 1 << 16, self.offset)
        if not data:
            return False
        self.offset += len(data)
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        out = [line + b"\n" for line in lines if not self._chatter(line)]
        # A progress bar redraws with carriage returns and no line end: pass it on.
        head, cr, tail = self.pending.rpartition(b"\r")
        if cr:
            out.append(head + cr)
            self.pending = tail
        self._write(b"".join(out))
        return True

    def join(self) -> None:
        self.stop.set()
        self.thread.join()

    def drain(self) -> None:
        """Forward the rest, the last line even without its line end."""
        while self.pump():
            pass
        if self.pending and not self._chatter(self.pending):
            self._write(self.pending)
        self.pending = b""

    @staticmethod
    def _chatter(line: bytes) -> bool:
        return is_chatter(line.decode("utf-8", "replace").rstrip("\r"))

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # stderr closed: nothing to tell it
            while data:
                data = data[os.write(self.target, data) :]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or replaced stream
            stream.flush()


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """While inside: descriptor 2 (C, C++ and Python writes alike) goes through the chatter
    filter; every other line reaches the real stderr as it comes. Nests. Where descriptor 2
    cannot be redirected (closed, or no ``os.pread``), nothing is filtered."""
    _flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep quiet
        saved = -1
    if saved < 0 or not hasattr(os, "pread"):
        if saved >= 0:
            os.close(saved)
        yield
        return
    with tempfile.TemporaryFile(prefix="lenet-parity-stderr-") as capture:
        os.dup2(capture.fileno(), 2)
        forwarder = _Forwarder(capture.fileno(), saved)
        forwarder.thread.start()
        try:
            yield
        finally:
            _flush()
            forwarder.join()
            os.dup2(saved, 2)
            forwarder.drain()  # what came between the thread's last look and the restore
            os.close(saved)


class _DropMatching(logging.Filter):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def silence_python_chatter() -> None:
    """Drop :data:`PYTHON_CHATTER` from its loggers (only those messages; idempotent)."""
    for name, pattern in PYTHON_CHATTER.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMatching) for f in logger.filters):
            logger.addFilter(_DropMatching(pattern))


@contextlib.contextmanager
def framework_import() -> Iterator[None]:
    """Around importing Keras and its backend, and their first op: the frameworks' start-up
    chatter is dropped (:func:`filtered_stderr`), everything else still shows; then the
    tensorflow logger's retracing warnings are filtered for the rest of the process."""
    silence_python_chatter()
    with filtered_stderr():
        yield
