"""``lenet-parity spec`` and ``check --dry-run``: what an implementation receives and must
return, and whether it keeps the protocol — without judging a number."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from compare.errors import ProtocolError
from compare.parity import dropout
from compare.parity.collect import dataset, shared_weights
from compare.parity.config import CheckConfig
from compare.parity.run import configure, prepare, resolve_implementation, spec_for
from compare.sides import keras_side
from compare.sides.implementation import ImplementationSide
from compare.sides.layout import LayoutAdapter
from compare.sides.protocol import OPTIONAL, ModelSpec

DRY_BATCH = 2  # digits per call of a dry run


def _prepared(config: CheckConfig) -> ModelSpec:
    """The spec of ``config`` on this process's backend (made deterministic, checked for the
    dtype, as a check would)."""
    backend, _ = prepare(config)
    return spec_for(config, backend)


def model_spec(model: str, dtype: str, **options: Any) -> ModelSpec:
    """The spec ``FACTORY(spec)`` receives for these options (those of
    :func:`compare.parity.run.configure`) on this process's backend."""
    keras_side.backend_module()
    return _prepared(configure(model, dtype, epochs=0, **options))


def arrays_table(spec: ModelSpec) -> str:
    """Every array an implementation receives and returns, in both layouts."""
    first = LayoutAdapter(spec, "channels_first")
    n, dt = spec.batch_size, spec.dtype

    def row(name: str, keras: tuple[int, ...], channels_first: np.ndarray) -> str:
        return f"{name:<34} {keras!s:<22} {tuple(channels_first.shape)!s:<22} {dt}"

    rows = [f"{'array':<34} {'channels_last':<22} {'channels_first':<22} dtype"]
    x = np.zeros((n, *spec.input_shape), dtype=dt)
    rows.append(row("x (in)", x.shape, first.input_to(x)))
    y = np.zeros((n, spec.num_classes), dtype=dt)
    rows.append(row("y (in, one-hot)", y.shape, y))
    for layer in spec.layers:
        out = np.zeros((n, *layer.output_shape), dtype=dt)
        name = f"layer_outputs()[{layer.name!r}] (out)"
        rows.append(row(name, out.shape, first.output_to(layer.name, out)))
    for key, shape in spec.weight_shapes().items():
        w = np.zeros(shape, dtype=dt)
        rows.append(row(f"{key} (weights in, grads out)", shape, first.weight_to(key, w)))
    rows.append(f"{'loss (out)':<34} a scalar")
    rows.append(f"{'train_step() (out)':<34} the batch's loss before the update, a scalar")
    return "\n".join(rows)


@dataclasses.dataclass(frozen=True)
class DryRun:
    lines: list[str]
    breaches: list[str]

    @property
    def ok(self) -> bool:
        return not self.breaches

    def summary(self) -> str:
        if self.ok:
            return "dry run: no protocol breach (numbers were not judged: run without --dry-run)"
        return f"dry run: {len(self.breaches)} protocol breach(es): " + "; ".join(self.breaches)


def dry_run(implementation: str | None, model: str, dtype: str, **options: Any) -> DryRun:
    """Call each of the implementation's methods once on a batch of ``DRY_BATCH`` examples and
    collect protocol breaches (:class:`ProtocolError`); an exception inside the
    implementation propagates (:class:`~compare.errors.ImplementationError`). ``options``
    are those of :func:`compare.parity.run.configure`."""
    label, factory = resolve_implementation(implementation)
    keras_side.backend_module()
    config = configure(
        model, dtype, batch_size=DRY_BATCH, epochs=0, implementation=label, **options
    )
    spec = _prepared(config)
    data = dataset(config, spec)
    x, y = data.x_train[:DRY_BATCH], data.y_train[:DRY_BATCH]
    masks = dropout.keep_masks(spec, DRY_BATCH, config.seed, 0)
    lines = [f"dry run of {label} ({spec.name}, {dtype}, {DRY_BATCH} examples)"]
    try:
        side = ImplementationSide(factory, spec)
        lines.append(f"FACTORY(spec): ok, layout {side.layout}")
        side.set_weights(shared_weights(config, spec))
        lines.append("set_weights(): ok")
        outputs = side.layer_outputs(x)
        absent = [la.name for la in spec.layers if la.name not in outputs]
        lines.append(
            "layer_outputs(): ok"
            + (f"; not provided: {', '.join(absent)}" if absent else "; every layer provided")
        )
        for method in OPTIONAL:
            if not side.provides(method):
                lines.append(f"{method}(): not provided (its checks are skipped)")
                continue
            if method == "loss_and_gradients":
                _, grads, dx = side.loss_and_gradients(x, y, masks)
                lines.append(
                    f"{method}(): ok, {len(grads)} gradients"
                    + ("" if dx is not None else ", no dloss_dx")
                )
            elif method == "train_step":
                side.train_step(x, y, masks)
                lines.append(f"{method}(): ok")
            else:
                lines.append(f"{method}(): ok, {len(side.get_weights())} weights")
    except ProtocolError as exc:
        return DryRun(lines, [str(exc)])
    return DryRun(lines, [])
