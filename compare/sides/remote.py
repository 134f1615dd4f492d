"""The Keras reference in a worker process on another backend.

Keras computes on the backend it was first imported with, so a check on JAX or torch that
needs a reference on TensorFlow (the float64 judge: JAX and torch compute parts of a float64
model in float32, :func:`compare.sides.keras_side.float32_inside`) gets it from a worker
process: ``python -m compare.sides.remote`` with that backend's environment
(:func:`compare.sides.backends.child_env`). :class:`RemoteReference` has the methods of
:class:`compare.sides.keras_side.KerasReference` that the judge calls, each a request to the
worker; one worker per backend serves every reference of the process and stops when the
process exits (:func:`close_workers`).

Messages are NumPy ``.npz`` archives, read with ``allow_pickle=False``, each preceded by its
length (8 bytes, big-endian), on the worker's stdin and its original stdout: the member
``header`` holds the message as UTF-8 JSON in which every array is ``{"__array__": i}``, the
array being member ``a{i}``. Whatever the libraries print to stdout in the worker goes to
stderr, which the parent keeps in a temporary file for the one line it says when the worker
fails.

This module imports no Keras in the parent (nor does :mod:`compare.sides.keras_side` until it
is used); the worker imports it for its own backend.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from types import ModuleType
from typing import IO, Any, Final, NoReturn

import numpy as np

from compare.errors import InputError, JudgeUnavailable
from compare.sides import backends, keras_side
from compare.sides.protocol import ModelSpec

# What a worker's reference answers: KerasReference's methods the float64 judge calls.
METHODS: Final = (
    "layer_outputs",
    "training_outputs",
    "set_weights",
    "loss_and_gradients",
    "train_step",
    "get_weights",
    "predict",
)
_LENGTH_BYTES: Final = 8


# -- messages ---------------------------------------------------------------------------------
def _encode(value: Any, arrays: list[np.ndarray]) -> Any:
    """``value`` as JSON with its arrays moved to ``arrays`` (numbers, strings, None, lists,
    tuples and dicts with string keys; NumPy scalars become Python numbers)."""
    if isinstance(value, np.ndarray):
        arrays.append(value)
        return {"__array__": len(arrays) - 1}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {"__dict__": [[str(k), _encode(v, arrays)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_encode(v, arrays) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a worker message cannot carry {type(value).__name__}")


def _decode(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if "__array__" in value:
            return arrays[f"a{int(value['__array__'])}"]
        return {k: _decode(v, arrays) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def pack(message: Any) -> bytes:
    """One message, framed: its length, then the npz archive."""
    arrays: list[np.ndarray] = []
    header = json.dumps(_encode(message, arrays)).encode("utf-8")
    buffer = io.BytesIO()
    members: dict[str, Any] = {f"a{i}": a for i, a in enumerate(arrays)}
    np.savez(buffer, header=np.frombuffer(header, dtype=np.uint8), **members)
    payload = buffer.getvalue()
    return len(payload).to_bytes(_LENGTH_BYTES, "big") + payload


def read_message(stream: IO[bytes]) -> tuple[bool, Any]:
    """The next message of ``stream``: (True, message), or (False, None) at its end. A
    truncated or malformed message is a ValueError."""
    head = stream.read(_LENGTH_BYTES)
    if not head:
        return False, None
    if len(head) != _LENGTH_BYTES:
        raise ValueError("a worker message was cut off in its length")
    size = int.from_bytes(head, "big")
    payload = stream.read(size)
    if len(payload) != size:
        raise ValueError(f"a worker message was cut off: {len(payload)} of {size} bytes")
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = arrays.pop("header", None)
    if header is None:
        raise ValueError("a worker message has no header")
    return True, _decode(json.loads(header.tobytes().decode("utf-8")), arrays)


# -- the worker -------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """The worker's loop: ``open`` a reference (its source, dtype, weights and recipe), ``call``
    one of its :data:`METHODS`, ``close`` it; until the end of ``requests``. Every request gets
    one reply, ``{"ok": True, "value": …}`` or ``{"ok": False, "error": one line}``."""
    backend: ModuleType | None = None  # the worker's own, from its environment, on first use
    references: dict[int, keras_side.KerasReference] = {}
    while True:
        more, request = read_message(requests)
        if not more:
            return
        try:
            op = request["op"]
            if op == "open":
                backend = backend or keras_side.backend_module()
                keras_side.check_backend_dtype(backend, request["dtype"])
                backend.configure_determinism(int(request["seed"]))
                references[int(request["handle"])] = keras_side.KerasReference(
                    request["source"],
                    request["dtype"],
                    backend,
                    request["weights"],
                    training=bool(request["training"]),
                    learning_rate=float(request["learning_rate"]),
                    momentum=float(request["momentum"]),
                    nesterov=bool(request["nesterov"]),
                )
                value: Any = {"backend": backend.NAME, "versions": backend.versions()}
            elif op == "call" and request["method"] in METHODS:
                method = getattr(references[int(request["handle"])], request["method"])
                value = method(*request["args"], **request["kwargs"])
            elif op == "close":
                value = references.pop(int(request["handle"]), None) is not None
            else:
                raise ValueError(f"unknown request {op!r}")
            reply = {"ok": True, "value": value}
        except Exception as exc:  # the parent says it in one line
            reply = {"ok": False, "error": _one_line(exc)}
        replies.write(pack(reply))
        replies.flush()


def _private_stdout() -> IO[bytes]:
    """The worker's original stdout for the replies; fd 1 goes to stderr from here on, so that
    nothing a library prints can corrupt a message."""
    sys.stdout.flush()
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return replies


def worker_main() -> int:
    """``python -m compare.sides.remote``: a worker (started by :class:`RemoteReference`)."""
    if sys.stdin.isatty():
        print("a lenet-parity worker, started by the harness: not for direct use", file=sys.stderr)
        return 2
    serve(sys.stdin.buffer, _private_stdout())
    return 0


# -- where the judge runs ---------------------------------------------------------------------
# The backend whose float64 is float64 throughout (reference/backend_tensorflow.py: nothing in
# FLOAT64_COMPUTED_IN_FLOAT32 or FLOAT64_LAYERS_COMPUTED_IN_FLOAT32).
JUDGE_BACKEND: Final = "tensorflow"


def judge_backend(backend: ModuleType, spec: ModelSpec) -> str | None:
    """Where a float32 check's float64 judge of ``spec`` runs: None for ``backend`` itself,
    :data:`JUDGE_BACKEND` (a worker) where ``backend`` computes part of the model in float32
    even in float64 (:func:`compare.sides.keras_side.float32_inside`), whose float64 run would
    share the float32 reference's errors. An InputError when that worker's backend is not
    installed."""
    inside = keras_side.float32_inside(backend, spec)
    if not inside:
        return None
    if not backends.is_installed(JUDGE_BACKEND):
        raise JudgeUnavailable(
            f"the float64 judge of {spec.name} in float32 on {backend.NAME} runs on "
            f"{JUDGE_BACKEND}, because Keras computes {', '.join(inside)} in float32 there even "
            f"in a float64 model, and {JUDGE_BACKEND} is not installed: pip install "
            f"'lenet-parity[{JUDGE_BACKEND}]' (a float64 check runs here, judged to float32's "
            "epsilon)"
        )
    return JUDGE_BACKEND


# -- the parent's side ------------------------------------------------------------------------
class _Worker:
    """One worker process on one backend, driven over its stdin and stdout."""

    def __init__(self, backend: str) -> None:
        backends.require(backend)
        self.backend = backend
        self._handles = 0
        # kept open for the worker's life, closed by close()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        env = backends.child_env(backend)
        # the worker finds what this process finds: a model builder's module, the project
        env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "compare.sides.remote"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )

    def new_handle(self) -> int:
        self._handles += 1
        return self._handles

    def request(self, message: Mapping[str, Any]) -> Any:
        """Send one request and return its reply's value; a failed request or a worker that
        stopped is an InputError of one line."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(pack(message))
            stdin.flush()
            more, reply = read_message(stdout)
        except (BrokenPipeError, OSError, ValueError):
            self._fail()
        if not more or not isinstance(reply, dict):
            self._fail()
        if not reply.get("ok"):
            raise InputError(f"the Keras reference on {self.backend} (a worker): {reply['error']}")
        return reply["value"]

    def _fail(self) -> NoReturn:
        try:
            code = self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = None
        self._stderr.seek(0)
        lines = [ln.strip() for ln in self._stderr.read().decode("utf-8", "replace").splitlines()]
        last = next((ln for ln in reversed(lines) if ln), "no error message")
        _WORKERS.pop(self.backend, None)
        raise InputError(f"the Keras worker on {self.backend} stopped (exit {code}): {last}")

    def close(self) -> None:
        """End the worker: its stdin closed ends its loop; killed if it has not exited soon."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()


_WORKERS: dict[str, _Worker] = {}


def worker(backend: str) -> _Worker:
    """The process's worker on ``backend``, started on first use."""
    if backend not in _WORKERS:
        _WORKERS[backend] = _Worker(backend)
    return _WORKERS[backend]


@atexit.register
def close_workers() -> None:
    """Stop every worker this process started."""
    while _WORKERS:
        _, found = _WORKERS.popitem()
        found.close()


class RemoteReference:
    """A :class:`compare.sides.keras_side.KerasReference` in the worker on ``backend``: the
    same constructor arguments (the backend by name, and the seed its determinism is set
    with) and the methods the float64 judge calls. Its results are the worker's arrays."""

    def __init__(
        self,
        source: str,
        dtype: str,
        backend: str,
        weights: Mapping[str, np.ndarray],
        *,
        seed: int,
        training: bool = False,
        learning_rate: float = 0.0,
        momentum: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        self._worker = worker(backend)
        self._handle = self._worker.new_handle()
        self.dtype = dtype
        opened = self._worker.request(
            {
                "op": "open",
                "handle": self._handle,
                "source": source,
                "dtype": dtype,
                "seed": int(seed),
                "weights": {k: np.asarray(v) for k, v in weights.items()},
                "training": training,
                "learning_rate": learning_rate,
                "momentum": momentum,
                "nesterov": nesterov,
            }
        )
        self.backend_name: str = opened["backend"]
        self.versions: dict[str, str] = opened["versions"]

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._worker.request(
            {"op": "call", "handle": self._handle, "method": method, "args": args, "kwargs": kwargs}
        )

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outputs: dict[str, np.ndarray] = self._call("layer_outputs", x)
        return outputs

    def training_outputs(
        self, x: np.ndarray, *, dropout_masks: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        outputs: dict[str, np.ndarray] = self._call(
            "training_outputs", x, dropout_masks=dropout_masks
        )
        return outputs

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        self._call("set_weights", dict(weights))

    def loss_and_gradients(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        dropout_masks: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        loss, grads, dx = self._call("loss_and_gradients", x, y, dropout_masks=dropout_masks)
        return float(loss), grads, dx

    def train_step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        dropout_masks: Mapping[str, np.ndarray] | None = None,
    ) -> float:
        return float(self._call("train_step", x, y, dropout_masks=dropout_masks))

    def get_weights(self) -> dict[str, np.ndarray]:
        weights: dict[str, np.ndarray] = self._call("get_weights")
        return weights

    def predict(self, x: np.ndarray) -> np.ndarray:
        probabilities: np.ndarray = self._call("predict", x)
        return probabilities

    def close(self) -> None:
        """Release the worker's model of this reference."""
        self._worker.request({"op": "close", "handle": self._handle})


if __name__ == "__main__":
    raise SystemExit(worker_main())
