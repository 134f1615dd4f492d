"""compare: the only package that knows both an implementation and Keras. Data flows one way,
and so do its imports: inputs (data, weights, safe reading and writing) → sides (the
implementation protocol, scratch's and Keras's sides, layouts) → judge (the comparison
helper, tolerances) → parity (collecting, training, the verdict) → output (text, reports) →
tools (mutants, calibrate, matrix, bench) → cli.

For users' own code: :func:`check_parity` returns the verdict, :func:`assert_parity` raises an
``AssertionError`` whose message is the verdict's table unless parity holds. An implementation
is a FACTORY following the protocol of docs/protocol.md (:class:`Implementation`,
:class:`ModelSpec`, :data:`PROTOCOL_VERSION`).

The names are resolved on first use (PEP 562), so that ``import compare.judge`` — or any other
lower layer — imports NumPy and that layer only, not the whole harness.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from compare.version import __version__

if TYPE_CHECKING:
    from compare.api import assert_parity, check_parity
    from compare.parity.verdict import Verdict
    from compare.sides.protocol import PROTOCOL_VERSION, Implementation, LayerSpec, ModelSpec

_API = {
    "check_parity": "compare.api",
    "assert_parity": "compare.api",
    "Verdict": "compare.parity.verdict",
    "PROTOCOL_VERSION": "compare.sides.protocol",
    "Implementation": "compare.sides.protocol",
    "LayerSpec": "compare.sides.protocol",
    "ModelSpec": "compare.sides.protocol",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'compare' has no attribute {name!r}")


__all__ = [
    "PROTOCOL_VERSION",
    "Implementation",
    "LayerSpec",
    "ModelSpec",
    "Verdict",
    "__version__",
    "assert_parity",
    "check_parity",
]
