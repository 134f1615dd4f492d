"""What produced a verdict: versions, backend, the machine (CPU model and BLAS) and the flags
that change numerics.

Float results differ by CPU and BLAS kernel (the same check measured 2.4e-7 on an AMD EPYC and
3.2e-4 on an Intel Xeon), so the environment names both: ``cpu`` is the CPU model
(``/proc/cpuinfo``'s "model name", else :func:`platform.processor`), and ``blas`` is NumPy's
BLAS — its library, version, the kernel it picked for this CPU (``architecture``) and its
threads — read through threadpoolctl when it is installed, else from NumPy's build
configuration and, for OpenBLAS, the library itself (``ctypes``).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import platform
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np

from compare.version import __version__

# Environment variables that change float results or the threads that compute them, shown
# whether set or not (the backend adds its own flags).
ENV_FLAGS: Final = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_ENABLE_ONEDNN_OPTS",
)
UNSET: Final = "unset"


def describe(backend: ModuleType, dtype: str) -> dict[str, Any]:
    """Versions of Python, NumPy, Keras and the backend; the backend's name and the loss path
    scratch follows on it; the dtype; the flags that change float results; the machine, its
    CPU model and NumPy's BLAS."""
    import keras  # the reference side is loaded by now

    return {
        "lenet_parity": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "keras": keras.__version__,
        **backend.versions(),
        "backend": backend.NAME,
        # the cross-entropy path scratch follows on this backend (logits or probabilities)
        "loss_path": backend.LOSS_PATH,
        "dtype": dtype,
        "flags": {
            **env_flags(),
            **backend.numeric_flags(),
            "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", UNSET),
        },
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "blas": blas(),
    }


def env_flags() -> dict[str, str]:
    """Every variable of :data:`ENV_FLAGS` with its value, or "unset"."""
    return {name: os.environ.get(name, UNSET) for name in ENV_FLAGS}


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name: the first "model name" of ``/proc/cpuinfo`` (Linux), else
    :func:`platform.processor` (which is often just the architecture), else "unknown"."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or "unknown"


def blas() -> dict[str, Any]:
    """NumPy's BLAS: ``library``, ``version``, ``architecture`` (the kernel it runs on this
    CPU), ``threads`` and ``source`` (how it was found); ``others``: the other BLAS and OpenMP
    libraries loaded in this process (a backend's own), when threadpoolctl can see them."""
    try:  # optional: it also names the BLAS and OpenMP libraries a backend brings
        threadpoolctl = importlib.import_module("threadpoolctl")
    except ImportError:
        return _blas_from_numpy()
    libraries = threadpoolctl.threadpool_info()
    numpy_dir = Path(np.__file__).resolve().parent.parent
    ours = [
        lib
        for lib in libraries
        if lib.get("user_api") == "blas" and _under(lib.get("filepath"), numpy_dir)
    ]
    if not ours:
        found = _blas_from_numpy()
    else:
        first = ours[0]
        found = {
            "library": first.get("internal_api"),
            "version": first.get("version"),
            "architecture": first.get("architecture"),
            "threads": first.get("num_threads"),
            "threading_layer": first.get("threading_layer"),
            "source": "threadpoolctl",
        }
    others = [
        {
            "library": lib.get("internal_api"),
            "version": lib.get("version"),
            "threads": lib.get("num_threads"),
            "file": Path(str(lib.get("filepath"))).name,
        }
        for lib in libraries
        if not any(lib is o for o in ours)
    ]
    return {**found, "others": others}


def _under(path: object, folder: Path) -> bool:
    try:
        return Path(str(path)).resolve().is_relative_to(folder)
    except OSError:
        return False


def _blas_from_numpy() -> dict[str, Any]:
    """NumPy's build configuration (the BLAS it was built with) and, for OpenBLAS, its kernel
    and threads asked of the loaded library; threads otherwise from the environment."""
    config: dict[str, Any] = {}
    with contextlib.suppress(Exception):  # show_config's layout is NumPy's, not ours
        info: Any = np.show_config(mode="dicts")
        config = dict(info["Build Dependencies"]["blas"])
    name = str(config.get("name", "unknown"))
    found: dict[str, Any] = {
        # threadpoolctl's names: "openblas" for scipy-openblas too
        "library": "openblas" if "openblas" in name.lower() else name,
        "build": name,
        "version": config.get("version"),
        "architecture": None,
        "threads": _threads_from_env(),
        "source": "numpy build configuration",
    }
    if "openblas" in name.lower():
        found |= {k: v for k, v in _ask_openblas().items() if v is not None}
    return found


def _threads_from_env() -> int | None:
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        with contextlib.suppress(KeyError, ValueError):
            return int(os.environ[name])
    return None


def _ask_openblas() -> dict[str, Any]:
    """The kernel (``architecture``) and thread count of the OpenBLAS NumPy loaded (Linux:
    found in ``/proc/self/maps``); nothing where it cannot be asked."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    numpy_dir = str(Path(np.__file__).resolve().parent.parent)
    paths = sorted(
        {line.split()[-1] for line in maps if "openblas" in line.lower() and numpy_dir in line}
    )
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        answers: dict[str, Any] = {}
        for key, function, restype in (
            ("architecture", "get_corename", ctypes.c_char_p),
            ("threads", "get_num_threads", ctypes.c_int),
        ):
            for symbol in (
                f"scipy_openblas_{function}64_",
                f"scipy_openblas_{function}",
                f"openblas_{function}64_",
                f"openblas_{function}",
            ):
                fn = getattr(lib, symbol, None)
                if fn is not None:
                    fn.restype, fn.argtypes = restype, []
                    value = fn()
                    answers[key] = value.decode() if isinstance(value, bytes) else value
                    break
        if answers:
            return answers | {"source": "numpy build configuration and the OpenBLAS library"}
    return {}
