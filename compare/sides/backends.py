"""Choosing the Keras backend before Keras is imported, and running work on another backend.

Keras fixes its backend when it is first imported (``KERAS_BACKEND``), so one process computes
on one backend. A command that wants another backend either sets it here before anything
imports Keras (:func:`choose`) or runs a child process with :func:`child_env`. This module
imports neither Keras nor any backend: it only looks at what is installed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Final

from compare.errors import InputError

BACKENDS: Final = ("tensorflow", "jax", "torch")
# The package each backend imports, and the lenet-parity extra that installs it with Keras.
_PACKAGES: Final = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def _env_for(name: str) -> dict[str, str]:
    """The environment variables a backend needs before Keras (and the backend) is imported:
    ``KERAS_BACKEND``; on JAX also ``JAX_ENABLE_X64=1``, without which JAX computes a float64
    model in float32 (Keras's floatx alone does not reach it)."""
    env = {"KERAS_BACKEND": name}
    if name == "jax":
        env["JAX_ENABLE_X64"] = "1"
    return env


def is_installed(name: str) -> bool:
    """Whether Keras and the backend's package can be imported (without importing them)."""
    return all(importlib.util.find_spec(p) is not None for p in ("keras", _PACKAGES[name]))


def installed() -> list[str]:
    """The Keras backends installed here, in :data:`BACKENDS` order."""
    return [name for name in BACKENDS if is_installed(name)]


def require(name: str) -> None:
    """Fail with a one-line, actionable error unless ``name`` is a known, installed backend."""
    if name not in BACKENDS:
        raise InputError(f"unknown Keras backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if not is_installed(name):
        missing = [p for p in ("keras", _PACKAGES[name]) if importlib.util.find_spec(p) is None]
        raise InputError(
            f"the {name} backend needs {' and '.join(missing)}, which is not installed: "
            f"pip install 'lenet-parity[{name}]'"
        )


def choose(name: str | None) -> str:
    """Make ``name`` (default: ``KERAS_BACKEND``, else tensorflow) the backend Keras will be
    imported with in this process, and return it. Fails when Keras is already imported with
    another backend (start a new process) or the backend is not installed."""
    name = name or os.environ.get("KERAS_BACKEND") or "tensorflow"
    require(name)
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise InputError(
                f"Keras is already running on {current} in this process; the {name} backend "
                f"needs a new process (e.g. `KERAS_BACKEND={name} lenet-parity ...`)"
            )
        return name
    os.environ.update(_env_for(name))
    return name


def child_env(name: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process that computes on backend ``name``."""
    return {**(os.environ if base is None else base), **_env_for(name)}


def parse_list(values: Sequence[str] | None) -> list[str]:
    """``--backends`` values (repeatable, comma-separated) → backend names, each checked to be
    installed; default: every installed backend."""
    if not values:
        names = installed()
        if not names:
            raise InputError(
                "no Keras backend is installed: pip install 'lenet-parity[tensorflow]' "
                "(or [jax], [torch])"
            )
        return names
    names = list(dict.fromkeys(n.strip() for v in values for n in v.split(",") if n.strip()))
    for name in names:
        require(name)
    return names
