"""``lenet-parity calibrate``: the table it writes, and --merge, which combines calibrations of
disjoint parts of a seeds x dtypes grid into the table one calibration over the grid writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import on_backend
import pytest

from compare.cli import main

# small and quick: the synthetic digits, a batch of 32, one epoch, no momentum runs
SMALL = [
    "--variant",
    "keras-docs",
    "--data",
    "synthetic",
    "--batch-size",
    "32",
    "--epochs",
    "1",
    "--momentum-epochs",
    "0",
]


def _calibrate(out: Path, *options: str) -> dict[str, Any]:
    assert main(["calibrate", *SMALL, *options, "--out", str(out)]) == 0
    table: dict[str, Any] = json.loads(out.read_text())
    return table


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One calibration over seeds 0-1 x both dtypes, and the same grid in three parts."""
    where = tmp_path_factory.mktemp("calibrations")
    runs = {
        "whole": ["--seeds", "2"],
        "seed0": ["--seeds", "1"],
        "seed1-float32": ["--first-seed", "1", "--seeds", "1", "--dtype", "float32"],
        "seed1-float64": ["--first-seed", "1", "--seeds", "1", "--dtype", "float64"],
    }
    for name, options in runs.items():
        _calibrate(where / f"{name}.json", *options)
    return {name: where / f"{name}.json" for name in runs}


def test_merged_parts_are_the_calibration_of_the_whole_grid(
    parts: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "merged.json"
    pieces = [str(parts[n]) for n in ("seed1-float64", "seed0", "seed1-float32")]
    assert main(["calibrate", "--merge", *pieces, "--out", str(out)]) == 0
    assert out.read_text() == parts["whole"].read_text()
    whole = json.loads(out.read_text())["runs"][on_backend.NAME]
    assert (whole["seeds"], whole["dtypes"]) == ([0, 1], ["float32", "float64"])


def test_first_seed_names_the_seeds_measured(parts: dict[str, Path]) -> None:
    run = json.loads(parts["seed1-float32"].read_text())["runs"][on_backend.NAME]
    assert (run["seeds"], run["dtypes"]) == ([1], ["float32"])


def test_a_merge_keeps_the_other_backends_of_the_table_it_writes(
    parts: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "table.json"
    whole = json.loads(parts["whole"].read_text())
    table = json.loads(parts["whole"].read_text())
    for key in ("tolerances", "measured", "runs"):  # another backend's entry, and a stale one
        table[key] = {"elsewhere": table[key][on_backend.NAME], on_backend.NAME: {}}
    table["runs"]["elsewhere"]["seeds"] = [7]
    out.write_text(json.dumps(table))
    pieces = [str(parts[n]) for n in ("seed0", "seed1-float32", "seed1-float64")]
    assert main(["calibrate", "--merge", *pieces, "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    for key in ("tolerances", "measured", "runs"):
        assert merged[key][on_backend.NAME] == whole[key][on_backend.NAME]
        assert merged[key]["elsewhere"] == table[key]["elsewhere"]


def _edited(source: Path, target: Path, **run: Any) -> str:
    table = json.loads(source.read_text())
    table["runs"][on_backend.NAME].update(run)
    target.write_text(json.dumps(table))
    return str(target)


def _malformed(source: Path, target: Path) -> str:
    table = json.loads(source.read_text())
    table["measured"][on_backend.NAME]["float32"]["forward"] = ["not", "a", "mapping"]
    target.write_text(json.dumps(table))
    return str(target)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("overlap", "both measured {backend} seed 0 float32: merge disjoint calibrations"),
        ("not-a-grid", "is not a full seeds x dtypes grid: seed 1 float64 is missing"),
        ("run-differently", "calibrated {backend} differently: epochs 2 != 1"),
        ("measuring-option", "--seeds does not apply. Received: --seeds=3"),
        ("missing", "--merge: no calibration table at"),
        ("malformed", "is not a calibration table: bad measured entry for {backend}"),
    ],
)
def test_a_merge_that_does_not_fit_is_one_line_and_writes_nothing(
    case: str,
    message: str,
    parts: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed0, seed1 = str(parts["seed0"]), str(parts["seed1-float32"])
    argv = {
        "overlap": ["--merge", seed0, seed0],
        "not-a-grid": ["--merge", seed0, seed1],
        "run-differently": [
            "--merge",
            seed0,
            _edited(parts["seed1-float32"], tmp_path / "e.json", epochs=2),
        ],
        "measuring-option": ["--merge", seed0, "--seeds", "3"],
        "missing": ["--merge", str(tmp_path / "nowhere.json")],
        "malformed": ["--merge", _malformed(parts["seed0"], tmp_path / "m.json")],
    }[case]
    out = tmp_path / "out.json"
    capsys.readouterr()
    assert main(["calibrate", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message.format(backend=on_backend.NAME) in err
    assert not out.exists()
