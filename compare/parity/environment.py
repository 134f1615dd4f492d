"""What produced a verdict: versions, backend and the flags that change numerics."""

from __future__ import annotations

import os
import platform
from types import ModuleType
from typing import Any

import numpy as np

from compare import __version__


def describe(backend: ModuleType, dtype: str) -> dict[str, Any]:
    """Versions of Python, NumPy, Keras and the backend; the backend's name and the loss path
    scratch follows on it; the dtype; and the flags that change float results."""
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
            **backend.numeric_flags(),
            "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "unset"),
        },
        "machine": platform.machine(),
    }
