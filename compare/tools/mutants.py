"""``lenet-parity mutants``: run the parity check on every built-in deliberate bug of the
catalogue (:mod:`compare.sides.mutants`) and say whether each was caught and named."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from compare.errors import InputError
from compare.parity.run import check_parity
from compare.sides.mutants import (
    CATALOGUE,
    LENET5,
    Mutant,
    Site,
    get,
    localised,
    model_for,
)
from compare.tools.progress import Progress


def run_catalogue(
    *,
    models: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    dtypes: Sequence[str],
    seed: int = 0,
    batch_size: int = 256,
    data: str = "bundled",
    names: Sequence[str] | None = None,
    epochs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the parity check with each mutant (``names``, default the whole catalogue) on each
    of ``models`` it applies to (zoo names, or any model source; default the two LeNet-5s;
    ``variants`` is the old name) and each dtype; a mutant named in ``names`` that applies to
    none of them is an InputError. One result per run: was it caught (the check failed),
    which check failed first, which one had to (``expected``, from the mutant's
    :class:`~compare.sides.mutants.Site` on that model) and does it name the bug
    (``localised``, :func:`localised`). ``expected_caught`` is False only for a float32 run of
    a bug smaller than float32 noise.

    ``epochs=None`` trains only where the bug needs it: model bugs run without training (their
    first failure comes before it), training bugs with ten steps
    (:data:`~compare.sides.mutants.TRAINING_STEPS`) and their ``settings``."""
    if models is not None and variants is not None and list(models) != list(variants):
        raise InputError("give the models once: models= (variants= is its old name)")
    chosen = list(dict.fromkeys(models or variants or LENET5))
    selected = [get(n) for n in names] if names is not None else list(CATALOGUE.values())
    read = {model: model_for(model) for model in chosen}
    runs = [
        (mutant, model, mutant.site(read[model], model))
        for mutant in selected
        for model in chosen
        if mutant.applies_to(read[model])
    ]
    for mutant in selected if names is not None else []:  # a mutant asked for by name
        if not any(run[0] is mutant for run in runs):
            raise InputError(
                f"mutant {mutant.name!r} does not apply to {', '.join(chosen)}: it needs "
                f"{mutant.requires}; nothing would be run"
            )
    width = max((len(m.name) for m in selected), default=0)
    total = len(runs) * len(dtypes)
    with Progress(total, "mutants", progress, results=True) as shown:
        return [
            _run_one(mutant, model, site, dtype, shown, width, seed, batch_size, data, epochs)
            for mutant, model, site in runs
            for dtype in dtypes
        ]


def _run_one(
    mutant: Mutant,
    model: str,
    site: Site,
    dtype: str,
    progress: Progress,
    width: int,
    seed: int,
    batch_size: int,
    data: str,
    epochs: int | None,
) -> dict[str, Any]:
    """One mutant run's result; its line goes to ``progress``: ``1/12 [12 s] flatten-nchw
    keras-docs float64 caught=yes first=forward flatten localised=yes`` (names padded to
    ``width``)."""
    verdict = check_parity(
        model,
        dtype,
        seed=seed,
        batch_size=batch_size,
        data=data,
        mutant=mutant.name,
        **mutant.check_options(epochs),
    )
    first = verdict.first_failure
    result = {
        "mutant": mutant.name,
        "description": mutant.description,
        "target": mutant.layer,
        "layers": list(site.layers),
        "expected": site.expected,
        "model": model,
        "variant": model,  # the old name of "model"
        "dtype": dtype,
        "expected_caught": dtype == "float64" or mutant.float32,
        "caught": not verdict.passed,
        "first_failure": None
        if first is None
        else {"kind": first.kind, "name": first.name, "step": first.step},
        "localised": localised(mutant, first, site),
    }
    where = "-" if first is None else f"{first.kind} {first.name}"
    if first is not None and first.step is not None:
        where += f" @{first.step}"
    progress.finished(
        f"{mutant.name:<{width}} {model:<10} {dtype:<7} "
        f"caught={'yes' if result['caught'] else 'NO':<3} first={where:<32} "
        f"localised={'yes' if result['localised'] else 'NO'}"
    )
    return result
