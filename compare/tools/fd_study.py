"""Measuring the finite differences' error, central and one-sided (docs/checks.md).

    python -m compare.tools.fd_study --out reports/fd_study.json [--seeds 5] [--model M ...]

For every zoo model (or each ``--model``) and seed, on the project's scratch model in float64
with the parity check's own weights, digits and entries (:class:`FiniteDifferenceProbe`), for
every trainable parameter and the input: at each tried entry, the central difference where it
is kink-free, and the backward and forward second-order one-sided differences wherever their
side is kink-free, each against the analytic gradient. Entries where both kinds exist measure
what the one-sided formula costs over the central one on the same entry; entries where only
the one-sided ones exist (a relu input exactly at 0) are the ones the check uses them for.

The report keeps, per formula, the largest absolute error, the largest error in units of the
tolerance the check judges it by (``FD_ATOL + FD_RTOL |analytic|`` for central,
``FD_ONE_SIDED_ATOL + FD_ONE_SIDED_RTOL |analytic|`` for one-sided: below 1 passes) with where
it happened, and how many entries were measured.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compare.parity import dropout
from compare.parity.collect import (
    FiniteDifferenceProbe,
    dataset,
    pattern_source,
    shared_weights,
)
from compare.parity.config import (
    FD_ATOL,
    FD_ONE_SIDED_ATOL,
    FD_ONE_SIDED_RTOL,
    FD_RTOL,
)
from compare.parity.environment import cpu_model
from compare.parity.finite_difference import kink_free_differences, one_sided_differences
from compare.parity.run import configure, prepare, spec_for
from compare.sides import keras_side, quiet, scratch_side


def measure(model: str, seed: int) -> list[dict[str, Any]]:
    """Every measured entry of one model and seed: its tensor, the formula, the analytic
    gradient and the difference's error."""
    config = configure(model, "float64", seed=seed)
    backend, _ = prepare(config)
    spec = spec_for(config, backend)
    weights = shared_weights(config, spec)
    data = dataset(config, spec)
    x, y = data.x_train[: config.batch_size], data.y_train[: config.batch_size]
    probe = FiniteDifferenceProbe(
        spec,
        scratch_side.build,
        weights,
        x,
        y,
        dropout.keep_masks(spec, len(x), seed, 0),
        patterns=pattern_source(config, spec, backend, weights),
    )
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for key, t in probe.tensors.items():
        analytic = probe.analytic[key].array
        evaluate = probe.evaluate(key)
        for pos in probe.candidates(key, rng):
            a = float(analytic[pos])
            used, central = kink_free_differences(evaluate, t, [pos], 1)
            for formula, (got, values) in {
                "central": (used, central),
                "one-sided": one_sided_differences(evaluate, t, [pos], 1),
            }.items():
                if got:
                    rows.append(
                        {
                            "model": model,
                            "seed": seed,
                            "tensor": key,
                            "entry": list(pos),
                            "formula": formula,
                            "central_kink_free": bool(used),
                            "analytic": a,
                            "error": float(values[0] - a),
                        }
                    )
    return rows


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per formula (and for one-sided, split by whether the central difference was kink-free
    at the entry): the largest error, the largest in units of the formula's tolerance, and the
    entry where each happened."""
    allowed = {
        "central": (FD_ATOL, FD_RTOL),
        "one-sided": (FD_ONE_SIDED_ATOL, FD_ONE_SIDED_RTOL),
    }
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        where = (
            ""
            if row["formula"] == "central"
            else (
                " (central kink-free too)" if row["central_kink_free"] else " (central on a kink)"
            )
        )
        groups.setdefault(row["formula"] + where, []).append(row)
    summary: dict[str, Any] = {}
    for name, group in sorted(groups.items()):
        atol, rtol = allowed[group[0]["formula"]]
        margins = [abs(r["error"]) / (atol + rtol * abs(r["analytic"])) for r in group]
        worst = int(np.argmax(margins))
        largest = int(np.argmax([abs(r["error"]) for r in group]))
        summary[name] = {
            "entries": len(group),
            "tolerance": {"atol": atol, "rtol": rtol},
            "largest_abs_error": abs(group[largest]["error"]),
            "largest_abs_error_at": _where(group[largest]),
            "largest_margin": margins[worst],
            "largest_margin_at": _where(group[worst]),
        }
    return summary


def _where(row: dict[str, Any]) -> str:
    return f"{row['model']} seed {row['seed']} {row['tensor']}{row['entry']}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--model", action="append", help="a zoo name (default: every one)")
    args = parser.parse_args(argv)
    keras_side.backend_module()  # Keras, imported quietly
    models = args.model or list(keras_side.zoo())
    started = time.perf_counter()
    with quiet.filtered_stderr():
        runs = [(model, seed) for model in models for seed in range(args.seeds)]
        rows = [row for model, seed in runs for row in measure(model, seed)]
    report = {
        "about": __doc__.split("\n\n")[0],
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_model(),
        "models": models,
        "seeds": args.seeds,
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summarise(rows),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
