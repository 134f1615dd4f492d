"""``lenet-parity bench``: how fast the scratch LeNet-5 trains and predicts next to Keras.

What is measured
    The scratch model and the Keras LeNet-5 on every requested backend (TensorFlow, JAX, torch)
    train the keras-docs LeNet-5 in float32 from one set of initial weights
    (:func:`compare.inputs.weights.initial_weights`) on the same digits (the bundled 8,000 training
    digits, or the first ``--digits`` of them) in the same batches: epoch ``e`` visits the
    digits in the order :func:`epoch_order` gives (one seeded permutation per epoch, the same
    for everyone), cut into batches of ``--batch-size``. Inference is a forward pass over the
    2,000 held-out digits in batches of 256.

How
    Every implementation runs in a long-lived worker process of its own (``python -m
    compare.tools.bench --worker NAME``; Keras workers get
    :func:`compare.sides.backends.child_env`),
    so that each has its own Keras backend and its own peak memory. The parent talks to the
    workers over their stdin/stdout, one JSON object per line, and never computes while a
    worker does. Each worker first runs one untimed warm-up epoch and one untimed prediction
    (imports, graph tracing, JIT compilation, caches), then the repeats are *interleaved*:
    repeat ``r`` asks every implementation in turn for ``--epochs`` timed epochs, then every
    implementation in turn for one timed prediction (the starting implementation rotates with
    ``r``), so a slow spell of a busy machine is shared out rather than landing on one
    implementation. A worker times with :func:`time.perf_counter` around the training call
    only (the batches' gather happens before), after a ``gc.collect()``.

    - scratch trains with :func:`scratch.fit` (``shuffle=False`` on the pre-permuted epoch) and
      predicts with ``model.forward`` per batch of 256.
    - Keras trains with ``model.fit(x_perm, y_perm, batch_size=B, epochs=1, shuffle=False,
      verbose=0)`` once per epoch — fit is how a Keras user trains — and predicts with
      ``model.predict(x, batch_size=256, verbose=0)``. Measured on this project's 2-core
      machine, fit costs 5–20 % more per epoch than a loop of ``train_on_batch`` (TensorFlow
      0.40 s against 0.34 s, JAX 0.78 against 0.85, torch 0.50 against 0.51 after warm-up):
      its per-call data-adapter set-up, which every fit user pays. So fit is representative,
      and it is what the numbers mean. The timed span ends with the epoch's loss read as a
      Python float, which waits for asynchronous backends (JAX).

What is reported, per implementation
    Seconds per epoch (median over the repeats, min–max and interquartile range), images per
    second, achieved GFLOP/s (:func:`count_flops` per image × images per second), that as a
    share of the machine's float32 matrix-multiply rate (:func:`measure_sgemm`, NumPy's BLAS in
    the parent before the workers start), the peak resident memory of the worker
    (``ru_maxrss``, which includes the interpreter, NumPy, pandas and for Keras the backend:
    the worker's resident size before it loads a model is reported too), scratch's median
    divided by the implementation's (how many times longer scratch takes) and inference
    images per second. The JSON holds the machine description and every raw timing.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Final, NoReturn, Protocol

import numpy as np
import pandas as pd

import scratch
from compare.errors import InputError
from compare.inputs import validate
from compare.inputs.atomic import atomic_output
from compare.inputs.data import load_data
from compare.inputs.weights import initial_weights
from compare.sides import backends as keras_backends
from compare.tools.progress import Progress

SCRATCH: Final = "scratch"
VARIANT: Final = "keras-docs"
DTYPE: Final = "float32"
LEARNING_RATE: Final = 0.05  # the Keras docs recipe, as reference.build_lenet5 compiles it
INFERENCE_BATCH: Final = 256
DEFAULT_JSON: Final = Path("reports/bench.json")
DEFAULT_PLOT: Final = Path("reports/bench.png")
SGEMM_SIZE: Final = 2048
SGEMM_REPEATS: Final = 5
_EXIT_GRACE_SECONDS: Final = 5
_THREAD_VARIABLES: Final = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


# -- configuration -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One benchmark: which Keras backends run next to scratch, and how long.

    ``epochs`` timed epochs per repeat (the repeat's value is their mean), ``repeats``
    interleaved repeats, ``digits``: train on the first N training digits (None: all).
    """

    backends: tuple[str, ...]
    epochs: int = 1
    repeats: int = 5
    batch_size: int = 256
    digits: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        validate.epochs(self.epochs, minimum=1)
        validate.repeats(self.repeats)
        validate.batch_size(self.batch_size)
        validate.seed(self.seed)
        if self.digits is not None:
            validate.count(self.digits, "digits")

    @property
    def implementations(self) -> tuple[str, ...]:
        """scratch, then the Keras backends, in the order they run."""
        return (SCRATCH, *self.backends)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BenchConfig:
        fields = json.loads(text)
        return cls(**{**fields, "backends": tuple(fields["backends"])})


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def label(name: str) -> str:
    """How an implementation is shown: ``scratch`` or ``keras/<backend>``."""
    return name if name == SCRATCH else f"keras/{name}"


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which every implementation visits the ``n`` training digits in epoch
    ``epoch`` (0 is the warm-up): one seeded permutation per epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n)


# -- the FLOP count ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LayerFlops:
    """One layer's floating-point operations per image.

    ``multiply_adds``: of the forward pass; ``forward`` = 2 × that; ``training`` = forward +
    the gradient with respect to the weights (as many multiply-adds again) + the gradient with
    respect to the input (again), but the model's first layer skips the last one.
    """

    name: str
    kind: str
    multiply_adds: int
    forward: int
    training: int


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """Floating-point operations per image of one model (see :func:`count_flops`)."""

    layers: tuple[LayerFlops, ...]

    @property
    def forward(self) -> int:
        return sum(layer.forward for layer in self.layers)

    @property
    def training(self) -> int:
        return sum(layer.training for layer in self.layers)

    @property
    def three_times_forward(self) -> int:
        """The rule of thumb "training = 3 × forward", first layer's input gradient included."""
        return 3 * self.forward

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": COUNT_RULE,
            "forward_per_image": self.forward,
            "training_per_image": self.training,
            "three_times_forward_per_image": self.three_times_forward,
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
        }


COUNT_RULE: Final = (
    "multiply-adds of Conv2D (out_h*out_w*filters*k_h*k_w*in_channels) and Dense "
    "(inputs*units) layers x 2 FLOPs; training = 3 x forward (forward, gradient wrt weights, "
    "gradient wrt inputs) except the first layer, which needs no input gradient (2 x forward); "
    "bias adds, activations, pooling, the loss and the SGD update are not counted"
)


def _multiply_adds(layer: scratch.Layer) -> int | None:
    """Forward multiply-adds per image of a Conv2D or Dense layer; None for other layers."""
    if isinstance(layer, scratch.Conv2D):
        kh, kw = layer.kernel_size
        return math.prod(layer.output_shape) * kh * kw * layer.input_shape[-1]
    if isinstance(layer, scratch.Dense):
        return math.prod(layer.input_shape) * layer.units
    return None


def count_flops(model: scratch.Sequential) -> FlopCount:
    """FLOPs per image of a built scratch model, layer by layer, by :data:`COUNT_RULE`.

    For the keras-docs LeNet-5: 281,640 multiply-adds, so 563,280 FLOPs forward and 1,517,040
    training (3 × forward would be 1,689,840: conv1's input gradient, 172,800 FLOPs, is never
    computed — scratch skips it, and the Keras backends differentiate with respect to the
    weights only).
    """
    counted = []
    for index, layer in enumerate(model.layers):
        macs = _multiply_adds(layer)
        if macs is None:
            continue
        passes = 2 if index == 0 else 3
        counted.append(
            LayerFlops(layer.name, type(layer).__name__, macs, 2 * macs, 2 * macs * passes)
        )
    return FlopCount(tuple(counted))


def lenet5_flops(variant: str = VARIANT) -> FlopCount:
    """:func:`count_flops` of the scratch LeNet-5 ``variant``."""
    return count_flops(scratch.build_lenet5(variant, dtype=DTYPE))


# -- the machine -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sgemm:
    """The machine's float32 matrix-multiply rate: ``size``² @ ``size``² through NumPy."""

    size: int
    seconds: tuple[float, ...]

    @property
    def gflops(self) -> float:
        return 2 * self.size**3 / float(np.median(self.seconds)) / 1e9

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "seconds": list(self.seconds), "gflops": self.gflops}


def measure_sgemm(size: int = SGEMM_SIZE, repeats: int = SGEMM_REPEATS) -> Sgemm:
    """Time ``repeats`` float32 ``np.matmul`` of two ``size`` × ``size`` matrices (after one
    untimed); the rate is 2·size³ FLOPs over the median time."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    np.matmul(a, b)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b)
        seconds.append(time.perf_counter() - start)
    return Sgemm(size, tuple(seconds))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> dict[str, Any]:
    """NumPy's BLAS as ``np.show_config(mode="dicts")`` describes it (empty if it cannot)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = np.show_config(mode="dicts")
    except (TypeError, ValueError, AttributeError):
        return {}
    blas = (config or {}).get("Build Dependencies", {}).get("blas", {})
    return {k: blas[k] for k in ("name", "version", "openblas configuration") if k in blas}


def describe_machine() -> dict[str, Any]:
    """The CPU, the cores this process may use, memory, Python, NumPy and its BLAS, the load."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            first = meminfo.readline().split()  # MemTotal: N kB
            memory = round(int(first[1]) / 1024**2, 1) if first[:1] == ["MemTotal:"] else None
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": _cpu_model(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gb": memory,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas(),
        "thread_variables": {k: os.environ[k] for k in _THREAD_VARIABLES if k in os.environ},
        "load_average": list(os.getloadavg()),
    }


def _max_rss_mb() -> float:
    """This process's peak resident memory in MB (Linux reports kB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


# -- the workers' side -------------------------------------------------------------------------
class Trainee(Protocol):
    """What a worker drives: one implementation of the LeNet-5."""

    def train_epoch(self, x: np.ndarray, y: np.ndarray) -> float:
        """Train one epoch on ``(x, y)`` in order, in batches; return the epoch's loss."""

    def predict(self, x: np.ndarray) -> None:
        """Forward ``x`` in batches of :data:`INFERENCE_BATCH`."""

    def environment(self) -> dict[str, Any]:
        """Versions and settings of what computes."""


class ScratchTrainee:
    """The scratch LeNet-5 with :func:`scratch.fit` and SGD."""

    def __init__(self, config: BenchConfig, weights: dict[str, np.ndarray]) -> None:
        self.config = config
        self.model = scratch.build_lenet5(VARIANT, dtype=DTYPE, seed=config.seed)
        self.model.set_weights(weights)
        self.optimizer = scratch.SGD(LEARNING_RATE)

    def train_epoch(self, x: np.ndarray, y: np.ndarray) -> float:
        history = scratch.fit(
            self.model,
            x,
            y,
            optimizer=self.optimizer,
            batch_size=self.config.batch_size,
            epochs=1,
            shuffle=False,
        )
        # weighted by batch size, as Keras's fit averages its loss
        sizes = [
            min(self.config.batch_size, len(x) - i)
            for i in range(0, len(x), self.config.batch_size)
        ]
        return float(np.average(history.step_loss, weights=sizes))

    def predict(self, x: np.ndarray) -> None:
        for start in range(0, len(x), INFERENCE_BATCH):
            self.model.forward(x[start : start + INFERENCE_BATCH])

    def environment(self) -> dict[str, Any]:
        return {"implementation": SCRATCH, "numpy": np.__version__, "blas": _blas()}


class KerasTrainee:
    """The Keras LeNet-5 (``reference.build_lenet5``) with ``fit`` and ``predict`` on the
    backend this process imported Keras with."""

    def __init__(self, config: BenchConfig, weights: dict[str, np.ndarray]) -> None:
        import reference  # Keras is imported here, on the backend the environment names

        self.config = config
        self.model = reference.build_lenet5(VARIANT, DTYPE)
        reference.set_weights(self.model, weights)

    def train_epoch(self, x: np.ndarray, y: np.ndarray) -> float:
        history = self.model.fit(
            x, y, batch_size=self.config.batch_size, epochs=1, shuffle=False, verbose=0
        )
        return float(history.history["loss"][-1])

    def predict(self, x: np.ndarray) -> None:
        self.model.predict(x, batch_size=INFERENCE_BATCH, verbose=0)

    def environment(self) -> dict[str, Any]:
        import importlib

        import keras

        backend = keras.backend.backend()
        module = importlib.import_module(backend)
        return {
            "implementation": backend,
            "keras": keras.__version__,
            "backend": backend,
            backend: str(getattr(module, "__version__", "unknown")),
            "numpy": np.__version__,
            "jit_compile": bool(getattr(self.model, "jit_compile", False)),
        }


class _Channel:
    """The worker's end of the pipe: JSON lines on the original stdout. Everything else the
    libraries print to stdout goes to stderr, so that it cannot corrupt the protocol."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()


def _timed_epochs(
    trainee: Trainee, x: np.ndarray, y: np.ndarray, epochs: Sequence[int], seed: int
) -> dict[str, Any]:
    """Train the given epochs, each on its own permutation; the time of each epoch."""
    seconds, losses = [], []
    for epoch in epochs:
        order = epoch_order(len(x), seed, epoch)
        x_epoch, y_epoch = x[order], y[order]
        gc.collect()
        start = time.perf_counter()
        loss = trainee.train_epoch(x_epoch, y_epoch)
        seconds.append(time.perf_counter() - start)
        losses.append(loss)
    return {"seconds": seconds, "losses": losses}


def _timed_predict(trainee: Trainee, x: np.ndarray) -> dict[str, Any]:
    gc.collect()
    start = time.perf_counter()
    trainee.predict(x)
    return {"seconds": time.perf_counter() - start}


def serve(name: str, config: BenchConfig, commands: IO[str], channel: _Channel) -> None:
    """The worker's loop: build ``name``'s model, say it is ready, then answer ``train``,
    ``predict`` and ``exit`` commands until ``exit`` or the end of ``commands``."""

    rss_start = _max_rss_mb()
    data = load_data("bundled", seed=config.seed, dtype=DTYPE)
    x, y = data.x_train[: config.digits], data.y_train[: config.digits]
    weights = initial_weights(VARIANT, DTYPE, config.seed)
    trainee: Trainee = (
        ScratchTrainee(config, weights) if name == SCRATCH else KerasTrainee(config, weights)
    )
    channel.send({"ready": True, "environment": trainee.environment(), "rss_start_mb": rss_start})
    for line in commands:
        command = json.loads(line)
        if command["op"] == "train":
            channel.send(_timed_epochs(trainee, x, y, command["epochs"], config.seed))
        elif command["op"] == "predict":
            channel.send(_timed_predict(trainee, data.x_heldout))
        elif command["op"] == "exit":
            channel.send({"max_rss_mb": _max_rss_mb()})
            return
        else:
            raise ValueError(f"unknown bench command {command['op']!r}")


def worker_main(argv: Sequence[str] | None = None) -> int:
    """``python -m compare.tools.bench --worker NAME --config JSON``: one worker."""
    args = list(sys.argv[1:] if argv is None else argv)
    names = (SCRATCH, *keras_backends.BACKENDS)
    if len(args) != 4 or args[0] != "--worker" or args[2] != "--config" or args[1] not in names:
        print(
            "usage: python -m compare.tools.bench --worker NAME --config JSON (started by "
            "`lenet-parity bench`; not for direct use)",
            file=sys.stderr,
        )
        return 2
    serve(args[1], BenchConfig.from_json(args[3]), sys.stdin, _Channel())
    return 0


# -- the parent's side -------------------------------------------------------------------------
def _worker_command(name: str, config: BenchConfig) -> list[str]:
    return [
        sys.executable,
        "-m",
        "compare.tools.bench",
        "--worker",
        name,
        "--config",
        config.to_json(),
    ]


def _worker_env(name: str) -> dict[str, str]:
    return dict(os.environ) if name == SCRATCH else keras_backends.child_env(name)


class Worker:
    """One implementation's worker process, driven over its stdin/stdout."""

    def __init__(self, name: str, config: BenchConfig, stderr: IO[str]) -> None:
        self.name = name
        self._stderr = stderr
        self._process = subprocess.Popen(
            _worker_command(name, config),
            env=_worker_env(name),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
        )

    def receive(self) -> dict[str, Any]:
        """The worker's next reply; a worker that died or answers garbage is an InputError."""
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._fail()
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            reply = None
        if not isinstance(reply, dict):
            raise InputError(f"the {label(self.name)} worker sent {line.strip()[:80]!r}")
        return reply

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail()
        return self.receive()

    def _fail(self) -> NoReturn:
        """Raise the one-line error of a worker that stopped: its exit code and the last line
        it wrote to stderr."""
        try:
            code = self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        self._stderr.seek(0)
        lines = [line.strip() for line in self._stderr if line.strip()]
        last = lines[-1] if lines else "no error message"
        raise InputError(f"the {label(self.name)} worker failed (exit {code}): {last}")

    def close(self) -> None:
        """Stop the process and release its pipes: its stdin is closed, which ends its command
        loop, and it is killed unless it has exited a few seconds later."""
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()
        try:
            self._process.wait(timeout=_EXIT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@contextmanager
def started(config: BenchConfig) -> Iterator[dict[str, Worker]]:
    """One worker per implementation, all started at once; always stopped on the way out."""
    with ExitStack() as stack:
        workers = {}
        for name in config.implementations:
            stderr = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
            worker = Worker(name, config, stderr)
            stack.callback(worker.close)
            workers[name] = worker
        yield workers


@dataclasses.dataclass(frozen=True)
class Measurements:
    """One implementation's raw results."""

    name: str
    environment: dict[str, Any]
    warmup_epoch_seconds: float
    warmup_predict_seconds: float
    epoch_seconds: tuple[tuple[float, ...], ...]  # per repeat: each timed epoch
    epoch_losses: tuple[tuple[float, ...], ...]
    predict_seconds: tuple[float, ...]  # per repeat
    rss_start_mb: float
    max_rss_mb: float

    @property
    def seconds_per_epoch(self) -> np.ndarray:
        """One value per repeat: the mean of its timed epochs."""
        return np.array([np.mean(r) for r in self.epoch_seconds])

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": label(self.name),
            "environment": self.environment,
            "warmup_epoch_seconds": self.warmup_epoch_seconds,
            "warmup_predict_seconds": self.warmup_predict_seconds,
            "epoch_seconds": [list(r) for r in self.epoch_seconds],
            "epoch_losses": [list(r) for r in self.epoch_losses],
            "predict_seconds": list(self.predict_seconds),
            "rss_start_mb": self.rss_start_mb,
            "max_rss_mb": self.max_rss_mb,
        }


@dataclasses.dataclass
class _Collected:
    """What the parent gathers from one worker while the bench runs."""

    environment: dict[str, Any]
    rss_start_mb: float
    warmup: list[float] = dataclasses.field(default_factory=list)
    epochs: list[tuple[float, ...]] = dataclasses.field(default_factory=list)
    losses: list[tuple[float, ...]] = dataclasses.field(default_factory=list)
    predicts: list[float] = dataclasses.field(default_factory=list)

    def done(self, name: str, max_rss_mb: float) -> Measurements:
        return Measurements(
            name=name,
            environment=self.environment,
            warmup_epoch_seconds=self.warmup[0],
            warmup_predict_seconds=self.warmup[1],
            epoch_seconds=tuple(self.epochs),
            epoch_losses=tuple(self.losses),
            predict_seconds=tuple(self.predicts),
            rss_start_mb=self.rss_start_mb,
            max_rss_mb=max_rss_mb,
        )


def _rotated(names: Sequence[str], by: int) -> list[str]:
    by %= len(names)
    return [*names[by:], *names[:by]]


def _measure(
    config: BenchConfig, workers: dict[str, Worker], tick: Callable[[str], object]
) -> list[Measurements]:
    """Warm every worker up (one after another), then the interleaved repeats; ``tick`` gets
    each finished job (a warm-up, a repeat's timed epochs, a repeat's prediction)."""
    collected = {}
    for name, worker in workers.items():
        ready = worker.receive()
        collected[name] = _Collected(ready.get("environment", {}), ready.get("rss_start_mb", 0.0))
    for name, worker in workers.items():
        collected[name].warmup.append(worker.request("train", epochs=[0])["seconds"][0])
        collected[name].warmup.append(worker.request("predict")["seconds"])
        tick(f"{label(name)} warm-up: epoch {collected[name].warmup[0]:.2f} s")
    names = list(config.implementations)
    for r in range(config.repeats):
        epochs = [1 + r * config.epochs + k for k in range(config.epochs)]
        for name in _rotated(names, r):
            reply = workers[name].request("train", epochs=epochs)
            collected[name].epochs.append(tuple(reply["seconds"]))
            collected[name].losses.append(tuple(reply["losses"]))
            tick(f"{label(name)} repeat {r + 1}: {np.mean(reply['seconds']):.3f} s/epoch")
        for name in _rotated(names, r):
            collected[name].predicts.append(workers[name].request("predict")["seconds"])
            tick(f"{label(name)} repeat {r + 1}: predict {collected[name].predicts[-1]:.3f} s")
    return [
        collected[name].done(name, workers[name].request("exit")["max_rss_mb"]) for name in names
    ]


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """Everything one bench measured, with the derived numbers."""

    config: BenchConfig
    machine: dict[str, Any]
    flops: FlopCount
    sgemm: Sgemm
    train_digits: int
    heldout_digits: int
    measurements: tuple[Measurements, ...]
    load_average_after: tuple[float, ...]

    def summary(self, m: Measurements) -> dict[str, Any]:
        """Median, spread and rates of one implementation."""
        per_epoch = m.seconds_per_epoch
        median = float(np.median(per_epoch))
        q1, q3 = (float(q) for q in np.percentile(per_epoch, [25, 75]))
        images = self.train_digits / median
        gflops = self.flops.training * images / 1e9
        predict = float(np.median(m.predict_seconds))
        scratch_median = float(np.median(self.measurements[0].seconds_per_epoch))
        return {
            "seconds_per_epoch_median": median,
            "seconds_per_epoch_min": float(per_epoch.min()),
            "seconds_per_epoch_max": float(per_epoch.max()),
            "seconds_per_epoch_iqr": [q1, q3],
            "images_per_second": images,
            "gflops": gflops,
            "sgemm_share": gflops / self.sgemm.gflops,
            "scratch_over_this": scratch_median / median,
            "inference_seconds_median": predict,
            "inference_images_per_second": self.heldout_digits / predict,
            "inference_gflops": self.flops.forward * self.heldout_digits / predict / 1e9,
            "max_rss_mb": m.max_rss_mb,
        }

    def frame(self) -> pd.DataFrame:
        """The printed table: one row per implementation."""
        rows = []
        for m in self.measurements:
            s = self.summary(m)
            rows.append(
                {
                    "implementation": label(m.name),
                    "s/epoch": f"{s['seconds_per_epoch_median']:.3f}",
                    "min-max": f"{s['seconds_per_epoch_min']:.3f}-{s['seconds_per_epoch_max']:.3f}",
                    "images/s": f"{s['images_per_second']:,.0f}",
                    "GFLOP/s": f"{s['gflops']:.2f}",
                    "% sgemm": f"{100 * s['sgemm_share']:.1f}",
                    "scratch/this": f"{s['scratch_over_this']:.2f}",
                    "infer images/s": f"{s['inference_images_per_second']:,.0f}",
                    "peak RSS MB": f"{s['max_rss_mb']:.0f}",
                }
            )
        return pd.DataFrame(rows)

    def headline(self) -> str:
        """What ran, on what, with the FLOP count and the sgemm rate."""
        c, machine = self.config, self.machine
        return (
            f"{machine['cpu']}, {machine['usable_cpus']} usable cores, NumPy {machine['numpy']}; "
            f"sgemm {self.sgemm.gflops:.1f} GFLOP/s ({self.sgemm.size}x{self.sgemm.size} "
            f"float32). LeNet-5 {VARIANT} {DTYPE}: {self.flops.training / 1e6:.3f} MFLOP/image "
            f"training, {self.flops.forward / 1e6:.3f} forward. {self.train_digits:,} digits, "
            f"batch {c.batch_size}, {_count(c.epochs, 'timed epoch')} x "
            f"{_count(c.repeats, 'interleaved repeat')} after a warm-up epoch; inference on "
            f"{self.heldout_digits:,} digits at batch {INFERENCE_BATCH}."
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "command": "bench",
            "config": dataclasses.asdict(self.config),
            "variant": VARIANT,
            "dtype": DTYPE,
            "train_digits": self.train_digits,
            "heldout_digits": self.heldout_digits,
            "inference_batch_size": INFERENCE_BATCH,
            "machine": self.machine,
            "load_average_after": list(self.load_average_after),
            "flops": self.flops.as_dict(),
            "sgemm": self.sgemm.as_dict(),
            "implementations": [
                {**m.as_dict(), "summary": self.summary(m)} for m in self.measurements
            ],
        }


def _digit_counts(config: BenchConfig) -> tuple[int, int]:
    """Training digits (checked against --digits) and held-out digits of the bundled split."""

    data = load_data("bundled", seed=config.seed, dtype=DTYPE)
    available = len(data.x_train)
    if config.digits is not None and config.digits > available:
        raise InputError(f"--digits: the bundled data has {available:,} training digits")
    return config.digits or available, len(data.x_heldout)


def run(
    config: BenchConfig,
    *,
    progress: Callable[[str], None] | None = None,
    show_progress: bool = False,
) -> BenchResult:
    """Run the benchmark (see the module docstring). ``progress`` gets a counter line per
    finished job (``4/33 [21 s] keras/jax repeat 1: 0.781 s/epoch``), or a bar shows on a
    terminal (:mod:`compare.tools.progress`); ``show_progress`` without ``progress``: the
    lines go to stdout."""
    if progress is None and show_progress:
        progress = _print
    train_digits, heldout_digits = _digit_counts(config)
    machine = describe_machine()
    sgemm = measure_sgemm()
    jobs = len(config.implementations) * (1 + 2 * config.repeats)
    with Progress(jobs, "bench", progress) as shown, started(config) as workers:
        measurements = _measure(config, workers, shown.finished)
    return BenchResult(
        config=config,
        machine=machine,
        flops=lenet5_flops(),
        sgemm=sgemm,
        train_digits=train_digits,
        heldout_digits=heldout_digits,
        measurements=tuple(measurements),
        load_average_after=tuple(os.getloadavg()),
    )


def _print(line: str) -> None:
    print(line, flush=True)


# -- output ------------------------------------------------------------------------------------
def write_json(result: BenchResult, path: Path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")


def plot(result: BenchResult, path: Path) -> None:
    """Seconds per epoch (every repeat a point, the median a bar) and inference images per
    second, per implementation, as a PNG."""
    from matplotlib.figure import Figure

    labels = [label(m.name) for m in result.measurements]
    positions = np.arange(len(labels))
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    train_axes, infer_axes = figure.subplots(1, 2)
    series = (
        (train_axes, [m.seconds_per_epoch for m in result.measurements], "seconds per epoch"),
        (
            infer_axes,
            [result.heldout_digits / np.array(m.predict_seconds) for m in result.measurements],
            "inference images per second",
        ),
    )
    for axes, values, title in series:
        medians = [float(np.median(v)) for v in values]
        axes.bar(positions, medians, color="#c9d9ea", edgecolor="#4a6f96", label="median")
        for x, v in zip(positions, values, strict=True):
            offsets = np.linspace(-0.2, 0.2, len(v)) if len(v) > 1 else np.zeros(1)
            axes.plot(x + offsets, v, "o", color="#1f3b57", markersize=4)
        axes.set_xticks(positions, labels)
        axes.set_title(title)
        axes.set_ylim(bottom=0)
        axes.grid(axis="y", alpha=0.3)
    train_axes.plot([], [], "o", color="#1f3b57", markersize=4, label="each repeat")
    train_axes.legend(loc="upper right", fontsize="small")
    figure.suptitle(
        f"LeNet-5 {VARIANT} {DTYPE}, {result.train_digits:,} digits, batch "
        f"{result.config.batch_size}, {_count(result.config.repeats, 'interleaved repeat')} — "
        f"{result.machine['cpu']}, {result.machine['usable_cpus']} cores",
        fontsize="medium",
    )
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


if __name__ == "__main__":
    sys.exit(worker_main())
