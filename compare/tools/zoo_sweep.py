"""The float64 judge on every zoo model: honest margins, and what the precision ladder needs.

    python -m compare.tools.zoo_sweep --out reports/zoo_sweep.json [--seeds 5] [--model M ...]
        [--dtype float32 --dtype float64]

For every model (default: the whole zoo), dtype and seed, the project's scratch model is
checked against Keras on this process's backend (``KERAS_BACKEND``) under the float64 judge,
with the model's recipe and default training. The report keeps, per run, whether it passed and
its largest margins (an honest run's must all stay below 1), and for a float64 run each
check's ``k_ladder`` needed (:func:`compare.judge.float64.k_ladder_needed`: how many times
ε64/ε32 times the float32 reference's distance the float64 check needs beyond its floor). The
summary gives, per model and dtype, the largest margin with its check, and the largest
``k_ladder`` needed over everything with where; docs/judge.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compare.judge import float64 as rule
from compare.judge.checks import Pair
from compare.parity.collect import collect
from compare.parity.environment import cpu_model
from compare.parity.run import configure, float64_eps, judge_items, overrides, prepare, spec_for
from compare.parity.training import HELDOUT
from compare.sides import keras_side, quiet, scratch_side
from compare.tools.progress import Progress


def run_one(model: str, dtype: str, seed: int) -> dict[str, Any]:
    """One honest check under the float64 judge: its margins and, in float64, every check's
    ``k_ladder`` needed."""
    started = time.perf_counter()
    config = configure(model, dtype, seed=seed, judge="float64")
    backend, _ = prepare(config)
    with quiet.filtered_stderr():
        spec = spec_for(config, backend)
        items, curves = collect(config, spec, scratch_side.build, backend)
    heldout = 0 if curves is None else curves.heldout_size
    eps = float64_eps(backend, spec)
    checks = judge_items(items, overrides(None), config, heldout, eps)
    needed: dict[str, float] = {}
    if dtype == "float64":
        for item in items:
            if not isinstance(item, Pair) or item.judge is None or item.name == HELDOUT[1]:
                continue
            steps = None if item.at is None else np.asarray(item.at).reshape(-1)
            needed[f"{item.kind} {item.name}"] = rule.k_ladder_needed(
                item.actual, item.expected, item.judge, item.length or 1, steps=steps, eps=eps
            )
    resolution: dict[str, float] = {}
    flips: list[float] = []
    if dtype == "float32":
        for item in items:
            if not isinstance(item, Pair) or item.judge is None or item.name == HELDOUT[1]:
                continue
            resolution[f"{item.kind} {item.name}"] = relative_distance(item.expected, item.judge)
        flips += [
            float(np.max(i.disagreement)) * heldout
            for i in items
            if isinstance(i, Pair) and i.name == HELDOUT[1] and i.disagreement is not None
        ]
    margins = {
        f"{c.kind} {c.name}": float(c.margin) for c in checks if c.status in ("pass", "fail")
    }
    return {
        "model": model,
        "dtype": dtype,
        "seed": seed,
        "backend": backend.NAME,
        "passed": not any(c.failed for c in checks),
        "failed": [f"{c.kind} {c.name}" for c in checks if c.failed],
        "margins": margins,
        "k_ladder_needed": needed,
        # float32: each tensor's reference distance to float64 relative to its magnitude (>= 1:
        # unresolved, judged with the summation spread), and the held-out digits the reference
        # classified differently from float64
        "relative_distance": resolution,
        "heldout_flips": max(flips, default=None),
        "seconds": round(time.perf_counter() - started, 1),
    }


def relative_distance(expected: object, judge: object) -> float:
    """rms(expected − judge) / rms(judge) per step (the largest; per tensor outside training):
    how much of a float32 tensor is rounding. At least 1: float32 does not resolve it
    (:func:`compare.judge.float64.summation_spread`)."""
    e, j = np.asarray(expected, np.float64), np.asarray(judge, np.float64)
    axes = tuple(range(1, e.ndim)) if e.ndim > 1 else None
    distance = np.sqrt(np.mean(np.square(e - j), axis=axes))
    magnitude = np.sqrt(np.mean(np.square(j), axis=axes))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(magnitude > 0, distance / magnitude, np.where(distance > 0, np.inf, 0.0))
    return float(np.max(ratio, initial=0.0))


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per model and dtype the largest margin (and its check and seed); over every float64
    run the largest ``k_ladder`` needed, with where."""
    by: dict[str, Any] = {}
    for r in runs:
        key = f"{r['model']} {r['dtype']}"
        worst = max(r["margins"].items(), key=lambda kv: kv[1], default=("", 0.0))
        entry = by.setdefault(key, {"runs": 0, "failed_runs": 0, "largest_margin": -1.0})
        entry["runs"] += 1
        entry["failed_runs"] += 0 if r["passed"] else 1
        if worst[1] > entry["largest_margin"]:
            entry.update(largest_margin=worst[1], at=f"{worst[0]} (seed {r['seed']})")
    ladder = [
        (k, f"{r['model']} seed {r['seed']} {name}")
        for r in runs
        for name, k in r["k_ladder_needed"].items()
    ]
    k, where = max(ladder, default=(0.0, ""))
    ratios = [
        (v, f"{r['model']} seed {r['seed']} {name}")
        for r in runs
        for name, v in r.get("relative_distance", {}).items()
    ]
    resolved = [rv for rv in ratios if rv[0] < 1]
    unresolved = [rv for rv in ratios if rv[0] >= 1]
    flips = [(r["heldout_flips"], f"{r['model']} seed {r['seed']}") for r in runs]
    flips = [f for f in flips if f[0] is not None]
    return {
        "by_model": by,
        "float32_resolution": {
            "largest_resolved": max(resolved, default=None),
            "smallest_unresolved": min(unresolved, default=None),
            "unresolved": sorted(
                {w.split(" ", 3)[0] + " " + w.split(" ", 3)[3] for _, w in unresolved}
            ),
        },
        "heldout_flips": {"largest": max(flips, default=None)},
        "k_ladder_needed": {
            "largest": k,
            "at": where,
            "checks": len(ladder),
            "checks_needing_any": sum(1 for v, _ in ladder if v > 0),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds (default: 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default: 0)")
    parser.add_argument("--model", action="append", help="a zoo name (default: every one)")
    parser.add_argument("--dtype", action="append", choices=("float32", "float64"))
    args = parser.parse_args(argv)
    keras_side.backend_module()  # Keras, imported quietly
    models = args.model or list(keras_side.zoo())
    dtypes = args.dtype or ["float32", "float64"]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(m, d, s) for m in models for d in dtypes for s in seeds]
    runs = []
    with Progress(len(jobs), "zoo sweep", lambda line: print(line, flush=True)) as progress:
        for model, dtype, seed in jobs:
            runs.append(run_one(model, dtype, seed))
            failed = runs[-1]["failed"]
            verdict = "pass" if not failed else "FAIL " + ", ".join(failed[:3])
            progress.finished(f"{model} {dtype} seed {seed} {verdict}")
    report = {
        "about": __doc__.split("\n\n")[0],
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_model(),
        "rule": {"k_ladder": rule.DEFAULT_RULE.k_ladder, "floor64": rule.DEFAULT_RULE.floor64},
        "summary": summarise(runs),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
