"""The implementation side: a user's FACTORY loaded, called and held to the protocol.

:func:`load_factory` turns ``"MODULE:FACTORY"`` or ``"path/to/file.py:FACTORY"`` into the
callable. :class:`ImplementationSide` wraps what ``FACTORY(spec)`` returns: every call goes
through :meth:`ImplementationSide._call`, which turns an exception inside the user's code into
:class:`~compare.errors.ImplementationError` (exit 3, the user's traceback) and a return value
of the wrong kind into :class:`~compare.errors.ProtocolError` (exit 2, one line). Arrays go in
and come back through the :class:`~compare.sides.layout.LayoutAdapter`, and keys through
``weight_names``, so the harness sees Keras's keys and layouts only.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from compare.errors import ImplementationError, ProtocolError
from compare.sides.layout import Converted, LayoutAdapter
from compare.sides.protocol import LAYOUTS, OPTIONAL, REQUIRED, ModelSpec

Factory = Callable[[ModelSpec], Any]


def load_factory(reference: str) -> Factory:
    """``"MODULE:FACTORY"`` (MODULE importable here or from the current folder) or
    ``"path/to/file.py:FACTORY"`` → the factory callable."""
    if not isinstance(reference, str) or ":" not in reference.strip(":"):
        raise ProtocolError(
            f"--implementation takes MODULE:FACTORY or path/to/file.py:FACTORY. "
            f"Received: {reference!r}"
        )
    where, _, name = reference.rpartition(":")
    module = _import_file(where) if where.endswith(".py") or os.sep in where else _import(where)
    factory = getattr(module, name, None)
    if factory is None:
        raise ProtocolError(f"the implementation {where} has no {name!r}")
    if not callable(factory):
        raise ProtocolError(
            f"the implementation's {name} must be callable as {name}(spec). "
            f"Received: {type(factory).__name__}"
        )
    return factory


def _import(name: str) -> ModuleType:
    """Import ``name``; a top-level package not on ``sys.path`` is looked for in the current
    folder (without changing ``sys.path``), as ``python -m`` would find it."""
    top = name.partition(".")[0]
    if top not in sys.modules and importlib.util.find_spec(top) is None:
        spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
        if spec is None or spec.loader is None:
            raise ProtocolError(f"cannot import the implementation module {name!r}: not found")
        _execute(spec, top)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(f"{exc.name}.")):
            raise ProtocolError(
                f"cannot import the implementation module {name!r}: not found"
            ) from None
        raise ImplementationError(f"import {name}", exc) from exc
    except Exception as exc:  # the user's module raised while it was imported
        raise ImplementationError(f"import {name}", exc) from exc


def _import_file(where: str) -> ModuleType:
    path = Path(where)
    if not path.is_file():
        raise ProtocolError(f"the implementation file {where} does not exist")
    # a module name of its own per file, so two files with one stem do not collide
    digest = hashlib.sha1(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    module_name = f"lenet_parity_implementation_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ProtocolError(f"the implementation file {where} cannot be loaded as Python")
    return _execute(spec, module_name)


def _execute(spec: importlib.machinery.ModuleSpec, name: str) -> ModuleType:
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and relative imports look themselves up here
    try:
        assert spec.loader is not None
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's module raised while it was imported
        del sys.modules[name]
        raise ImplementationError(f"import {spec.origin}", exc) from exc
    except BaseException:  # an interrupt or a signal: not the user's bug
        del sys.modules[name]
        raise
    return module


def _is_array(value: object) -> bool:
    return isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__")


class ImplementationSide:
    """One instance of an implementation, seen in Keras's keys and layouts."""

    def __init__(self, factory: Factory, spec: ModelSpec) -> None:
        self.spec = spec
        self.obj = self._call("FACTORY(spec)", factory, spec)
        for method in REQUIRED:
            if not callable(getattr(self.obj, method, None)):
                raise ProtocolError(
                    f"the implementation lacks the required method {method}() "
                    f"(its object is a {type(self.obj).__name__}; see docs/protocol.md)"
                )
        for method in OPTIONAL:
            value = getattr(self.obj, method, None)
            if value is not None and not callable(value):
                raise ProtocolError(f"the implementation's {method} must be a method")
        layout = getattr(self.obj, "layout", "channels_last")
        if layout not in LAYOUTS:
            raise ProtocolError(
                f"the implementation's layout must be one of {', '.join(LAYOUTS)}. "
                f"Received: layout={layout!r}"
            )
        self.layout: str = layout
        self.adapter = LayoutAdapter(spec, layout)
        self.own_names = self._weight_names(getattr(self.obj, "weight_names", None))
        self.reference_names = {own: ref for ref, own in self.own_names.items()}

    def _weight_names(self, mapping: object) -> dict[str, str]:
        keys = list(self.spec.weight_shapes())
        if mapping is None:
            return {k: k for k in keys}
        if not isinstance(mapping, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise ProtocolError("the implementation's weight_names must map strings to strings")
        unknown = sorted(set(mapping) - set(keys))
        if unknown:
            raise ProtocolError(
                f"the implementation's weight_names has keys the model does not: {unknown[:5]} "
                f"(the model's keys: {', '.join(keys)})"
            )
        names = {k: mapping.get(k, k) for k in keys}
        if len(set(names.values())) != len(names):
            raise ProtocolError("the implementation's weight_names maps two weights to one name")
        return names

    # -- calling the user's code -------------------------------------------------------------
    @staticmethod
    def _call(method: str, fn: Callable[..., Any], *args: Any, **keywords: Any) -> Any:
        try:
            return fn(*args, **keywords)
        except Exception as exc:  # an interrupt or a signal (BaseException) passes through
            raise ImplementationError(method, exc) from exc

    def provides(self, method: str) -> bool:
        return callable(getattr(self.obj, method, None))

    def _array(self, method: str, what: str, value: object) -> np.ndarray:
        if not _is_array(value):
            raise ProtocolError(
                f"{method} returned {type(value).__name__} for {what}; expected a NumPy array"
            )
        return np.asarray(value)

    def _mapping(self, method: str, value: object) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise ProtocolError(
                f"{method} returned {type(value).__name__}; expected a mapping (dict)"
            )
        return value

    def _scalar(self, method: str, value: object) -> float:
        if isinstance(value, bool) or not (
            isinstance(value, (int, float)) or (_is_array(value) and np.asarray(value).size == 1)
        ):
            raise ProtocolError(
                f"{method} returned {type(value).__name__} for the loss; expected a scalar"
            )
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.number):
            raise ProtocolError(f"{method} returned a {array.dtype} loss; expected a number")
        return float(array.reshape(()))

    def _own_weights(self, method: str, value: object) -> dict[str, Converted]:
        """A weight or gradient mapping in the implementation's keys and layout → Keras's keys,
        each converted where its shape allows; keys the model lacks are left out."""
        result = {}
        for own, array in self._mapping(method, value).items():
            key = self.reference_names.get(own)
            if key is not None:
                result[key] = self.adapter.weight_from(key, self._array(method, own, array))
        return result

    # -- the protocol, in Keras's keys and layouts ----------------------------------------------
    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Copies, so that an implementation that keeps (and trains) the arrays it is given
        never changes the harness's."""
        converted = self.adapter.weights_to(weights)
        self._call(
            "set_weights()",
            self.obj.set_weights,
            {self.own_names[k]: np.array(v, copy=True) for k, v in converted.items()},
        )

    def layer_outputs(self, x: np.ndarray) -> dict[str, Converted]:
        raw = self._mapping(
            "layer_outputs()",
            self._call("layer_outputs()", self.obj.layer_outputs, self.adapter.input_to(x)),
        )
        names = {layer.name for layer in self.spec.layers}
        return {
            name: self.adapter.output_from(name, self._array("layer_outputs()", name, value))
            for name, value in raw.items()
            if name in names
        }

    def _masks(self, method: str, masks: Mapping[str, np.ndarray] | None) -> dict[str, Any]:
        """The ``dropout_masks`` keyword for ``method``: given only to models with Dropout,
        each keep mask in the implementation's layout (docs/protocol.md)."""
        if masks is None:
            return {}
        fn = getattr(self.obj, method)
        parameters: Mapping[str, inspect.Parameter]
        try:
            parameters = inspect.signature(fn).parameters
        except (TypeError, ValueError):  # a builtin or C callable: assume it takes keywords
            parameters = {}
        takes = "dropout_masks" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )
        if parameters and not takes:
            raise ProtocolError(
                f"the model has Dropout ({', '.join(masks)}): {method}() must take the keyword "
                "dropout_masks (layer name -> keep mask; see docs/protocol.md)"
            )
        return {"dropout_masks": {n: self.adapter.output_to(n, m) for n, m in masks.items()}}

    def loss_and_gradients(
        self, x: np.ndarray, y: np.ndarray, dropout_masks: Mapping[str, np.ndarray] | None = None
    ) -> tuple[float, dict[str, Converted], Converted | None]:
        method = "loss_and_gradients()"
        keywords = self._masks("loss_and_gradients", dropout_masks)
        result = self._call(
            method, self.obj.loss_and_gradients, self.adapter.input_to(x), y, **keywords
        )
        if not isinstance(result, tuple) or len(result) not in (2, 3):
            raise ProtocolError(
                f"{method} returned {type(result).__name__}; expected a tuple (loss, grads) or "
                "(loss, grads, dloss_dx)"
            )
        loss = self._scalar(method, result[0])
        grads = self._own_weights(method, result[1])
        dx = None
        if len(result) == 3:
            dx = self.adapter.input_from(self._array(method, "dloss_dx", result[2]))
        return loss, grads, dx

    def train_step(
        self, x: np.ndarray, y: np.ndarray, dropout_masks: Mapping[str, np.ndarray] | None = None
    ) -> float:
        method = "train_step()"
        keywords = self._masks("train_step", dropout_masks)
        return self._scalar(
            method, self._call(method, self.obj.train_step, self.adapter.input_to(x), y, **keywords)
        )

    def get_weights(self) -> dict[str, Converted]:
        method = "get_weights()"
        return self._own_weights(method, self._call(method, self.obj.get_weights))

    def predict(self, x: np.ndarray) -> np.ndarray | None:
        """The last layer's output (the probabilities) in Keras's layout; None when it is not
        returned or not of the model's shape."""
        out = self.layer_outputs(x).get(self.spec.layers[-1].name)
        return out.array if out is not None and out.converted else None
