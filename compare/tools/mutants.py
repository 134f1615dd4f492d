"""``lenet-parity mutants``: run the parity check on every built-in deliberate bug of the
catalogue (:mod:`compare.sides.mutants`) and say whether each was caught and named."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from compare.errors import InputError
from compare.parity.run import check_parity
from compare.sides.mutants import CATALOGUE, get, localised


def run_catalogue(
    *,
    variants: Sequence[str],
    dtypes: Sequence[str],
    seed: int = 0,
    batch_size: int = 256,
    data: str = "bundled",
    names: Sequence[str] | None = None,
    epochs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the parity check with each mutant on each variant it applies to and each dtype; one
    result per run: was it caught (the check failed), which check failed first, and does it
    name the bug (``localised``, :func:`localised`). ``expected_caught`` is False only for a
    float32 run of a bug smaller than float32 noise.

    ``epochs=None`` trains only where the bug needs it: model bugs run without training (their
    first failure comes before it), training bugs with one epoch and their ``settings``."""
    selected = [get(n) for n in names] if names is not None else list(CATALOGUE.values())
    for mutant in selected:
        if not any(v in mutant.variants for v in variants):
            raise InputError(
                f"mutant {mutant.name!r} does not apply to {', '.join(variants)}; it applies to "
                f"{', '.join(mutant.variants)}: nothing would be run"
            )
    width = max((len(m.name) for m in selected), default=0)
    total = sum(len(dtypes) for m in selected for v in variants if v in m.variants)
    started = time.perf_counter()
    results = []
    for mutant in selected:
        for variant in (v for v in variants if v in mutant.variants):
            for dtype in dtypes:
                verdict = check_parity(
                    variant,
                    dtype,
                    seed=seed,
                    batch_size=batch_size,
                    data=data,
                    epochs=int(mutant.trains) if epochs is None else epochs,
                    mutant=mutant.name,
                    **mutant.settings,  # type: ignore[arg-type]
                )
                first = verdict.first_failure
                result = {
                    "mutant": mutant.name,
                    "description": mutant.description,
                    "layer": mutant.layer,
                    "variant": variant,
                    "dtype": dtype,
                    "expected_caught": dtype == "float64" or mutant.float32,
                    "caught": not verdict.passed,
                    "first_failure": None
                    if first is None
                    else {"kind": first.kind, "name": first.name, "step": first.step},
                    "localised": localised(mutant, first),
                }
                results.append(result)
                if progress is not None:
                    where = "-" if first is None else f"{first.kind} {first.name}"
                    if first is not None and first.step is not None:
                        where += f" @{first.step}"
                    progress(
                        f"{len(results)}/{total} [{time.perf_counter() - started:.0f} s] "
                        f"{mutant.name:<{width}} {variant:<10} {dtype:<7} "
                        f"caught={'yes' if result['caught'] else 'NO':<3} first={where:<32} "
                        f"localised={'yes' if result['localised'] else 'NO'}"
                    )
    return results
