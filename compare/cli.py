"""The ``lenet-parity`` command: the only module that knows argparse.

Exit codes: 0 success, 1 parity fails (or a mutant escapes), 2 bad input, usage or a protocol
breach — always one line on stderr, never a traceback; 3 an exception inside the user's
implementation (its traceback, then one line); 130 interrupted.

Commands:
- ``check``: the layer-by-layer parity check of an implementation (default: the project's own
  scratch model) against Keras; a table and a verdict. ``--dry-run`` checks the protocol only.
- ``report``: the check written as a report folder; ``matrix``: on every Keras backend.
- ``spec``: the ModelSpec and every key, shape and dtype an implementation receives and returns.
- ``mutants``: run the check on every built-in deliberate bug; each must be caught and named.
- ``calibrate``: measure honest float disagreement over many seeds; write the tolerance table.
- ``train``: train the scratch LeNet-5 with the Keras docs recipe on real digits and print its
  learning curve (optionally as JSON).
- ``bench``: time scratch against every Keras backend.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np

import scratch
from compare.errors import ImplementationError, InputError
from compare.inputs import validate
from compare.inputs.atomic import check_output_file, check_output_folder, write_text_atomic
from compare.inputs.data import load_data
from compare.inputs.npz import shown
from compare.judge.checks import KINDS
from compare.judge.tolerances import SAFETY_FACTOR
from compare.output.report import write_report
from compare.output.text import summary, table
from compare.parity.config import DEFAULT_MAX_STEPS, DEFAULT_MODEL, JUDGES
from compare.parity.dry_run import arrays_table, dry_run, model_spec
from compare.parity.run import check_parity
from compare.parity.verdict import Verdict
from compare.sides import backends as keras_backends
from compare.sides.mutants import CATALOGUE as MUTANTS
from compare.tools import bench
from compare.tools import matrix as backend_matrix
from compare.tools.calibrate import calibrate, merge, read_previous
from compare.tools.mutants import run_catalogue
from compare.version import __version__

PROG = "lenet-parity"
DEFAULT_CALIBRATION_OUT = Path("reports/tolerances.json")
DEFAULT_REPORT_OUT = Path("reports/latest")
DEFAULT_MATRIX_OUT = Path("reports/matrix")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


T = TypeVar("T")


def arg_type(check: Callable[..., T], /, **options: Any) -> Callable[[str], T]:
    """An argparse ``type=`` from a validator of :mod:`compare.inputs.validate`:
    ``arg_type(validate.seed)``, ``arg_type(validate.epochs, minimum=1)``. A bad value becomes
    ``expected <range>, got '<text>'``, which argparse prefixes with the flag."""

    def parse(text: str) -> T:
        try:
            return check(validate.parse_number(text), **options)
        except validate.RangeError as exc:
            raise argparse.ArgumentTypeError(f"expected {exc.expected}, got {text!r}") from None
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(check, "__name__", "number")
    return parse


SEED = arg_type(validate.seed)


def _tolerance_value(text: str) -> tuple[str, float]:
    """``[KIND=]VALUE`` → (kind or "*", value)."""
    kind, _, value = text.rpartition("=")
    kind = kind or "*"
    if kind != "*" and kind not in KINDS:
        raise argparse.ArgumentTypeError(
            f"unknown check kind {kind!r} in {text!r}; expected one of {', '.join(KINDS)}"
        )
    return kind, arg_type(validate.tolerance)(value)


DATA_HELP = (
    "bundled: the 10,000 digits shipped with lenet-parity (8,000 train / 2,000 held out); "
    "keras: full MNIST from Keras's cache (~/.keras/datasets/mnist.npz, never downloaded); "
    "synthetic: tiny generated data; PATH: an .npz file"
)


MODEL_METAVAR = "NAME|FILE.keras|MODULE:BUILDER"
MODEL_SOURCES = (
    "the Keras reference: a zoo name (see below), FILE.keras (read in safe mode) or "
    "MODULE:BUILDER / path/to/file.py:BUILDER (BUILDER() returns a Keras model)"
)
MODEL_HELP = f"{MODEL_SOURCES}; default keras-docs"


def _add_model_option(parser: argparse.ArgumentParser) -> None:
    """--model, and --variant: its older name for the two LeNet-5s."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", metavar=MODEL_METAVAR, help=MODEL_HELP)
    group.add_argument(
        "--variant",
        dest="model",
        choices=sorted(scratch.VARIANTS),
        help="= --model, for the two LeNet-5s",
    )


def _add_models_option(parser: argparse.ArgumentParser, *, default: str) -> None:
    """--model and --variant, both repeatable and appending to ``models`` in the order given
    (:func:`_models` reads them)."""
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar=MODEL_METAVAR,
        help=f"{MODEL_SOURCES}; repeatable; default: {default}",
    )
    parser.add_argument(
        "--variant",
        dest="models",
        action="append",
        choices=sorted(scratch.VARIANTS),
        help="= --model, for the two LeNet-5s; repeatable, in order with --model",
    )


def _add_setup_options(
    parser: argparse.ArgumentParser, *, many: bool, models: bool = False
) -> None:
    """--variant/--dtype (repeatable when ``many``; with ``models``, --model and --variant),
    --seed, --batch-size, --data."""
    variants, dtypes = sorted(scratch.VARIANTS), ("float32", "float64")
    if many:
        if models:
            _add_models_option(parser, default="both LeNet-5s")
        else:
            parser.add_argument(
                "--variant", action="append", choices=variants, help="repeatable; default: both"
            )
        parser.add_argument(
            "--dtype", action="append", choices=dtypes, help="repeatable; default: both"
        )
    else:
        _add_model_option(parser)
        parser.add_argument("--dtype", choices=dtypes, default="float32")
        parser.add_argument(
            "--seed",
            type=SEED,
            help="the split, the shuffle, dropout's masks and (for a zoo model, or when given) "
            "a fresh initialisation of the weights; default 0 and a model file's own weights",
        )
    parser.add_argument(
        "--batch-size",
        type=arg_type(validate.batch_size),
        default=256,
        help="digits in the batch of the layer and gradient checks (default 256)",
    )
    parser.add_argument(
        "--data", default="bundled", metavar="bundled|keras|synthetic|PATH", help=DATA_HELP
    )


def _add_backend_option(parser: argparse.ArgumentParser) -> None:
    """--backend: the Keras backend of the reference (one per process: Keras fixes it at
    import)."""
    parser.add_argument(
        "--backend",
        choices=keras_backends.BACKENDS,
        help="the Keras backend the reference runs on (default: $KERAS_BACKEND, else "
        "tensorflow); the scratch loss path follows it",
    )


IMPLEMENTATION_HELP = (
    "the implementation to check: MODULE:FACTORY (MODULE importable from the current folder) "
    "or path/to/file.py:FACTORY, following docs/protocol.md; default: scratch, the project's "
    "own from-scratch NumPy LeNet-5"
)


def _add_implementation_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--implementation", metavar="MODULE:FACTORY", default=None, help=IMPLEMENTATION_HELP
    )


def _add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """The training recipe's options; each replaces the model's own (its compile config)."""
    parser.add_argument(
        "--learning-rate",
        type=arg_type(validate.learning_rate),
        help="SGD's learning rate on both sides (default: the model's recipe)",
    )
    parser.add_argument(
        "--momentum",
        type=arg_type(validate.momentum),
        help="SGD momentum on both sides, Keras's form (default: the model's recipe, else 0)",
    )
    parser.add_argument(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Nesterov momentum on both sides (default: the model's recipe)",
    )
    parser.add_argument(
        "--train-batch-size",
        type=arg_type(validate.batch_size),
        help="the training batch (default: the model's recipe, else Keras fit's 32)",
    )


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    """The check's own options (shared by ``check`` and ``report``)."""
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="weights to load into both models (.npz; .weights.h5 or .keras for the LeNet-5s); "
        "default: a model file's own weights, else a fresh initialisation from --seed",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--epochs",
        type=arg_type(validate.epochs),
        help="epochs of side-by-side training on identical batches after the layer checks "
        f"(default: one epoch or {DEFAULT_MAX_STEPS} steps, whichever is shorter; 0: none)",
    )
    length.add_argument(
        "--steps",
        type=arg_type(validate.step_count),
        help="train for this many steps instead (0: none)",
    )
    _add_recipe_options(parser)
    parser.add_argument(
        "--atol",
        type=_tolerance_value,
        action="append",
        default=[],
        metavar="[KIND=]VALUE",
        help=f"override the calibrated absolute tolerance (of one kind: {', '.join(KINDS)})",
    )
    parser.add_argument(
        "--rtol",
        type=_tolerance_value,
        action="append",
        default=[],
        metavar="[KIND=]VALUE",
        help="override the calibrated relative tolerance, like --atol",
    )
    parser.add_argument(
        "--judge",
        choices=JUDGES,
        default="auto",
        help="who judges: the calibrated tolerance table (the LeNet-5s only) or the float64 "
        "judge (a float64 run of the reference; any model, no calibration: docs/judge.md); "
        "default auto: the table for the LeNet-5s, the float64 judge for every other model",
    )
    parser.add_argument(
        "--mutant",
        metavar="NAME",
        help="apply a built-in deliberate bug to the scratch side (see `lenet-parity mutants`)",
    )


# calibrate's options that say what to measure, which --merge (measuring nothing) refuses
# (--backend only chooses the process's Keras backend; a merge reads it from the tables)
_MEASURING = (
    "variant",
    "dtype",
    "batch_size",
    "data",
    "seeds",
    "first_seed",
    "epochs",
    "momentum_epochs",
    "safety_factor",
)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but a paragraph already laid out (one with line breaks: the
    epilogs' lists) is kept as it is; every other paragraph is wrapped on its own."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        parts = text.split("\n\n")
        return "\n\n".join(p if "\n" in p else fill(p, width, indent) for p in parts)


# How long each command takes with its defaults on this project's 2-core machine, measured once
# each with the wall clock on commit 5fa25e8 (a shared machine: other work ran alongside, at a
# load of 0.3 for check, report and spec, 2-3 for matrix, bench and train, 5-7 for mutants);
# calibrate estimated from check's timings (docs/tolerances.md: what a calibration runs).
TAKES = {
    "check": (
        "about 15 s",
        "with the defaults, Keras's import included (--epochs 0: the layer checks alone; each "
        "further epoch of training adds a few seconds; --dry-run about as long as spec)",
    ),
    "spec": ("about 8 s", "(most of it importing Keras and building the reference model)"),
    "report": ("about 30 s", "(the check, then its plots; the check's options scale it)"),
    "mutants": (
        "about 30 minutes",
        "(every mutant on each LeNet-5 it applies to, in both dtypes: 10-50 s a run; measured "
        "while the machine was busy; --only, --model and --dtype run fewer)",
    ),
    "matrix": (
        "about 4 minutes",
        "(with the three backends installed here: one check per backend x model x dtype, "
        "6 by default, about 35 s each; a second --model doubles it)",
    ),
    "calibrate": (
        "about 25 minutes, estimated",
        "(80 runs: 20 seeds x both variants x both dtypes, each the layer checks twice and "
        "5 + 1 epochs of training; from check's timings, not measured; it scales "
        "with --seeds, --epochs, --momentum-epochs, --variant and --dtype; --merge takes "
        "seconds)",
    ),
    "train": (
        "about 2 minutes",
        "(20 epochs, the held-out metrics after each; measured while the machine was busy; "
        "--epochs scales it)",
    ),
    "bench": (
        "about 70 s",
        "(with the three backends installed here and 5 repeats; it scales with --repeats x "
        "--epochs and the number of backends)",
    ),
}


def _takes(command: str) -> str:
    """The last paragraph of ``command``'s description: how long it takes here."""
    short, detail = TAKES[command]
    return f"\n\nTime on this project's 2-core machine: {short} {detail}."


def _takes_all() -> str:
    """The epilog of ``lenet-parity --help``: every command's time."""
    times = "; ".join(f"{command} {short}" for command, (short, _) in TAKES.items())
    return f"Time of each command with its defaults on this project's 2-core machine: {times}."


EPILOG_WIDTH = 98  # the epilogs' lists are laid out for 100 columns, as docs/cli.md shows them
SCRATCH_HELP = (
    "scratch (the default --implementation): the project's own LeNet-5 written from scratch in "
    "NumPy, in scratch/ (its layers' forward and backward passes, the loss, SGD and the training "
    "loop; docs/scratch.md), checked against the Keras model of the same architecture."
)


def help_epilog(command: str) -> str:
    """The epilog of ``check --help`` and ``mutants --help`` (laid out here, kept as it is by
    :class:`_HelpFormatter`): what scratch is (check), the models, the mutant catalogue."""
    parts = [SCRATCH_HELP] if command == "check" else []
    parts.append(_models_help())
    parts.append(_mutants_help(full=command == "mutants"))
    return "\n\n".join(parts)


def _models_help() -> str:
    """The zoo a check can compare with (``MODELS``, the names ``--model`` takes besides a
    .keras file or a builder; a test holds them equal to reference/zoo.py's), for the
    epilogs."""
    width = max(len(name) for name in MODELS)
    lines = ["models (--model NAME; --variant for the two LeNet-5s):"]
    for name in MODELS:  # keras-docs first: classic and the BN model are told by their differences
        lines += textwrap.wrap(
            MODELS[name],
            width=EPILOG_WIDTH,
            initial_indent=f"  {name:<{width}}  ",
            subsequent_indent=" " * (width + 4),
        )
    return "\n".join(lines)


def _mutants_help(*, full: bool) -> str:
    """The mutant catalogue (compare/sides/mutants.py) in its order: each name with its target
    in the model, "in training" when only training shows it, and the options it needs;
    ``full``: with its description, what a model needs for it and where it must first fail."""
    intro = (
        "mutants (check --mutant NAME, mutants --only NAME): deliberate bugs patched into "
        "scratch, each with its target in the model"
        + ("" if full else " (`lenet-parity mutants --help` describes each)")
        + ":"
    )
    lines = textwrap.wrap(intro, width=EPILOG_WIDTH)
    width = max(len(name) for name in MUTANTS)
    for name, mutant in MUTANTS.items():
        needs = ["in training"] if mutant.trains else []
        needs += [_setting(key, value) for key, value in mutant.settings.items()]
        lines += textwrap.wrap(
            "; ".join([mutant.layer, *needs]),
            width=EPILOG_WIDTH,
            initial_indent=f"  {name:<{width}}  ",
            subsequent_indent=" " * (width + 4),
        )
        if not full:
            continue
        text = mutant.description.rstrip(".") + "."
        if mutant.requires and mutant.requires != "nothing":
            text += f" Needs {mutant.requires}."
        if mutant.shows:
            text += f" Must first fail at {mutant.shows}."
        lines += textwrap.wrap(
            text,
            width=EPILOG_WIDTH,
            initial_indent=" " * 6,
            subsequent_indent=" " * 6,
            break_on_hyphens=False,  # "cross-correlation" stays whole
        )
    return "\n".join(lines)


def _setting(key: str, value: float | bool) -> str:
    """A check setting a mutant needs, as its option: ``--momentum 0.9``, ``--nesterov``."""
    flag = "--" + key.replace("_", "-")
    return flag if value is True else f"{flag} {value:g}"


MODELS = {
    "keras-docs": "the Keras docs' LeNet-5: Conv2D 6@5x5 relu valid, AvgPool 2, Conv2D 16@5x5 "
    "relu, AvgPool 2, Flatten, Dense 120/84 relu, Dense 10 softmax; SGD 0.05, batch 256",
    "classic": "LeCun et al. 1998 on 28x28: the same with tanh and conv1 'same'",
    "seed000-cnn": "a NumPy tutorial's CNN: Conv2D 8@3x3 valid, no bias, no activation, "
    "MaxPool 2, Flatten, Dense 10 softmax; SGD 0.005 at batch 1, inputs in [-0.5, 0.5]",
    "cs231n-3layer": "cs231n's ThreeLayerConvNet: Conv2D 32@7x7 same relu, MaxPool 2, "
    "Dense 100 relu, Dense 10 softmax; normal(1e-3) kernels, L2(0.05); SGD 0.01, batch 100",
    "lenet5-bn-dropout": "keras-docs with each Conv2D linear, then BatchNormalization and a "
    "ReLU layer, and Dropout(0.5) after fc2",
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Check, layer by layer, that a from-scratch NumPy LeNet-5 computes what "
        "Keras computes.",
        epilog=_takes_all(),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    check = commands.add_parser(
        "check",
        help="compare an implementation with Keras layer by layer: outputs, gradients, training",
        description="Load one set of weights into the implementation (--implementation; "
        "default scratch: the project's own from-scratch NumPy LeNet-5) and the Keras model, "
        "run one batch of real digits through both, and compare every layer's output, the "
        "loss, every gradient and dloss/dinput (plus float64 finite differences of the "
        "implementation's own gradients); then train both side by side on identical batches "
        "and compare the per-step loss, the parameters and the held-out metrics. "
        "Exit 0: parity holds; 1: it fails; 2: bad input, usage or a protocol breach; 3: the "
        "implementation raised." + _takes("check"),
        epilog=help_epilog("check"),
        formatter_class=_HelpFormatter,
    )
    _add_backend_option(check)
    _add_implementation_option(check)
    _add_setup_options(check, many=False)
    _add_check_options(check)
    check.add_argument("--json", type=Path, metavar="FILE", help="also write the verdict here")
    check.add_argument(
        "--dry-run",
        action="store_true",
        help="call each of the implementation's methods once on a tiny batch and report "
        "protocol breaches only (no numbers are judged)",
    )
    check.set_defaults(run=run_check)

    spec = commands.add_parser(
        "spec",
        help="print the ModelSpec an implementation receives and every key, shape and dtype",
        description="Print the ModelSpec FACTORY(spec) receives (docs/protocol.md) for the "
        "options given, and every array an implementation receives and must return, in "
        "both layouts. Imports Keras (the spec is read off the reference model)." + _takes("spec"),
        formatter_class=_HelpFormatter,
    )
    _add_backend_option(spec)
    _add_model_option(spec)
    spec.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    spec.add_argument("--seed", type=SEED, default=0)
    _add_recipe_options(spec)
    spec.add_argument("--json", type=Path, metavar="FILE", help="also write the spec here")
    spec.set_defaults(run=run_spec)

    report = commands.add_parser(
        "report",
        help="run the check and write the comparison report (Markdown, HTML, CSV, JSON, plots)",
        description="Run the parity check (same options as `check`) and write report.md, "
        "index.html, checks.csv, verdict.json, PNG plots and (when it trained) curves.csv into "
        "--out, atomically; "
        "the report already there moves to previous/ beside it. "
        "Exit 0: parity holds; 1: it fails; 2: bad input or usage." + _takes("report"),
        formatter_class=_HelpFormatter,
    )
    _add_backend_option(report)
    _add_implementation_option(report)
    _add_setup_options(report, many=False)
    _add_check_options(report)
    report.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_REPORT_OUT,
        metavar="DIR",
        help=f"the report folder (default {DEFAULT_REPORT_OUT}; its parent must exist unless "
        "it is the default)",
    )
    report.set_defaults(run=run_report)

    mutants = commands.add_parser(
        "mutants",
        help="run the check on every built-in deliberate bug: is each caught and named?",
        description="Apply each bug of the mutant catalogue to the scratch model in turn and run "
        "the parity check. Exit 0 when every mutant is caught (the check fails) and the first "
        "failing check names the mutated layer; 1 otherwise. A counter line per finished run "
        "(a bar on a terminal)." + _takes("mutants"),
        epilog=help_epilog("mutants"),
        formatter_class=_HelpFormatter,
    )
    _add_backend_option(mutants)
    _add_setup_options(mutants, many=True, models=True)
    mutants.add_argument(
        "--seed", type=SEED, default=0, help="weights (of a zoo model) and split (default 0)"
    )
    mutants.add_argument(
        "--only", action="append", metavar="NAME", help="run only this mutant (repeatable)"
    )
    mutants.add_argument(
        "--epochs",
        type=arg_type(validate.epochs),
        help="epochs of training in every run (default: none for model bugs, whose first "
        "failure comes before training; 10 steps for training bugs)",
    )
    mutants.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    mutants.set_defaults(run=run_mutants)

    matrix = commands.add_parser(
        "matrix",
        help="the check on every installed Keras backend, and the backends against each other",
        description="Run the parity check on every Keras backend (each in its own process) "
        "and compare scratch with each backend and every backend with every other, forward, "
        "gradient and training; write one report (Markdown, HTML table and heatmap, CSV, JSON) "
        "into --out, atomically. A counter line per finished check (a bar on a terminal). "
        "A LeNet-5 is judged by its calibrated tolerances; any other model by the float64 "
        "judge, scratch vs each backend only (backend vs backend: n/a). A check a backend "
        "refuses is n/a, with why. "
        "Exit 0: everything agrees; 1: something disagrees; 2: bad input or usage."
        + _takes("matrix"),
        epilog=_models_help(),
        formatter_class=_HelpFormatter,
    )
    matrix.add_argument(
        "--backends",
        action="append",
        metavar="NAME[,NAME...]",
        help=f"backends to run ({', '.join(keras_backends.BACKENDS)}; repeatable or "
        "comma-separated); default: every installed one",
    )
    _add_implementation_option(matrix)
    _add_models_option(matrix, default=DEFAULT_MODEL)
    matrix.add_argument(
        "--dtype", action="append", choices=("float32", "float64"), help="repeatable; default: both"
    )
    matrix.add_argument(
        "--seed", type=SEED, default=0, help="weights (of a zoo model) and split (default 0)"
    )
    matrix.add_argument(
        "--batch-size",
        type=arg_type(validate.batch_size),
        default=256,
        help="digits in the compared batch",
    )
    matrix.add_argument(
        "--data", default="bundled", metavar="bundled|keras|synthetic|PATH", help=DATA_HELP
    )
    matrix.add_argument(
        "--epochs",
        type=arg_type(validate.epochs),
        help="epochs of side-by-side training in every check (default: one epoch or "
        f"{DEFAULT_MAX_STEPS} steps, whichever is shorter; 0: none)",
    )
    matrix.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_MATRIX_OUT,
        metavar="DIR",
        help=f"the report folder (default {DEFAULT_MATRIX_OUT}; the one there moves to "
        "<DIR>-previous)",
    )
    matrix.set_defaults(run=run_matrix)

    calibrate = commands.add_parser(
        "calibrate",
        help="measure honest float disagreement over many seeds and write the tolerance table",
        description="Run the unmutated comparison for every seed, dtype and variant, record the "
        "largest disagreement of every check, and write the tolerance table (the package's "
        "defaults live in compare/judge/tolerances.json: refresh them with --out "
        "compare/judge/tolerances.json). A counter line per measured dtype, variant and seed "
        "(a bar on a terminal)." + _takes("calibrate"),
        formatter_class=_HelpFormatter,
    )
    _add_backend_option(calibrate)
    _add_setup_options(calibrate, many=True)
    calibrate.add_argument(
        "--seeds",
        type=arg_type(validate.seed_count),
        default=20,
        help="how many seeds (default 20)",
    )
    calibrate.add_argument(
        "--first-seed",
        type=SEED,
        default=0,
        help="the seeds are FIRST..FIRST+N-1 (default 0); calibrations of disjoint seeds "
        "combine with --merge",
    )
    calibrate.add_argument(
        "--epochs",
        type=arg_type(validate.epochs),
        default=5,
        help="epochs of side-by-side training per run: the training envelopes reach the last "
        "step of these (default 5)",
    )
    calibrate.add_argument(
        "--momentum-epochs",
        type=arg_type(validate.epochs),
        default=1,
        help="epochs per run with SGD momentum 0.9 (Nesterov on odd seeds) for the momentum "
        "envelopes (default 1)",
    )
    calibrate.add_argument(
        "--safety-factor",
        type=arg_type(validate.safety_factor),
        default=SAFETY_FACTOR,
        help=f"tolerance = factor x largest honest disagreement (default {SAFETY_FACTOR:g})",
    )
    calibrate.add_argument(
        "--out",
        type=Path,
        default=Path("reports/tolerances.json"),
        metavar="FILE",
        help="where to write the table (default reports/tolerances.json); entries of other "
        "backends already in it are kept",
    )
    calibrate.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="TABLE",
        help="measure nothing: combine calibration tables of disjoint seeds (or dtypes) of one "
        "backend, run alike, into --out; the result is what one calibration over all of them "
        "writes (run the parts in parallel with --first-seed or --dtype)",
    )
    calibrate.set_defaults(
        run=run_calibrate,
        measuring_defaults={dest: calibrate.get_default(dest) for dest in _MEASURING},
    )

    train = commands.add_parser(
        "train",
        help="train the scratch LeNet-5 (Keras docs recipe) on real digits and print its curve",
        description="Train the scratch LeNet-5 with SGD on real MNIST digits and print the "
        "training and held-out loss and accuracy after every epoch." + _takes("train"),
        formatter_class=_HelpFormatter,
    )
    train.add_argument("--variant", choices=sorted(scratch.VARIANTS), default="keras-docs")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument("--epochs", type=arg_type(validate.epochs, minimum=1), default=20)
    train.add_argument("--batch-size", type=arg_type(validate.batch_size), default=256)
    train.add_argument("--learning-rate", type=arg_type(validate.learning_rate), default=0.05)
    train.add_argument("--momentum", type=arg_type(validate.momentum), default=0.0)
    train.add_argument("--nesterov", action="store_true")
    train.add_argument(
        "--loss-path",
        choices=("logits", "probabilities"),
        default="logits",
        help="cross-entropy as Keras computes it on TensorFlow (logits) or JAX/torch "
        "(clipped probabilities); default: logits",
    )
    train.add_argument("--seed", type=SEED, default=0, help="weights, split, shuffle")
    train.add_argument(
        "--data", default="bundled", metavar="bundled|keras|synthetic|PATH", help=DATA_HELP
    )
    train.add_argument("--json", type=Path, metavar="FILE", help="also write the history here")
    train.set_defaults(run=run_train)
    _add_bench(commands)
    return parser


def _output_file(path: Path | None, flag: str) -> None:
    """Fail before any work when an output file cannot be written (see
    :func:`compare.inputs.atomic.check_output_file`)."""
    if path is not None:
        check_output_file(path, flag)


def _run_verdict(args: argparse.Namespace) -> Verdict:
    """The check the options describe; prints its table and verdict line."""
    verdict = check_parity(
        args.model or DEFAULT_MODEL,
        args.dtype,
        seed=0 if args.seed is None else args.seed,
        fresh_weights=None if args.seed is None else True,
        batch_size=args.batch_size,
        data=args.data,
        weights=args.weights,
        epochs=args.epochs,
        steps=args.steps,
        **_recipe(args),
        atol=dict(args.atol),
        rtol=dict(args.rtol),
        mutant=args.mutant,
        implementation=args.implementation,
        judge=args.judge,
    )
    print(table(verdict))
    print(summary(verdict))
    return verdict


def run_check(args: argparse.Namespace) -> int:
    _output_file(args.json, "--json")
    if args.dry_run:
        if args.json is not None:
            raise InputError("--dry-run judges nothing: it takes no --json")
        return run_dry(args)
    verdict = _run_verdict(args)
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(verdict.as_dict(), indent=2) + "\n")
        print(f"wrote {shown(args.json)}")
    return 0 if verdict.passed else 1


def run_report(args: argparse.Namespace) -> int:
    if args.out == DEFAULT_REPORT_OUT:
        args.out.parent.mkdir(exist_ok=True)
    check_output_folder(args.out, "--out")
    verdict = _run_verdict(args)
    print(f"wrote {shown(write_report(verdict, args.out))}")
    return 0 if verdict.passed else 1


def _models(args: argparse.Namespace, default: Sequence[str]) -> list[str]:
    """The models of --model and --variant (matrix, mutants) in the order given, each once;
    ``default`` when none was given. Checked here as far as no Keras is needed, before any run
    starts (with the reference's own messages): a name must be a zoo name, a FILE.keras or
    path/to/file.py must exist."""
    models = list(dict.fromkeys(args.models or default))
    for source in models:
        where = source.rpartition(":")[0]
        if source.endswith(".keras"):
            if not os.path.isfile(source):
                raise InputError(f"model file {source}: does not exist or is not a file")
        elif source in MODELS:
            continue
        elif ":" in source.strip(":"):  # MODULE:BUILDER or path/to/file.py:BUILDER
            if (where.endswith(".py") or os.sep in where) and not os.path.isfile(where):
                raise InputError(f"model {source}: file {where} does not exist")
        else:
            raise InputError(
                f"unknown model {source!r}: expected a zoo name ({', '.join(MODELS)}), "
                "FILE.keras, MODULE:BUILDER or path/to/file.py:BUILDER"
            )
    return models


def run_mutants(args: argparse.Namespace) -> int:
    _output_file(args.json, "--json")
    results = run_catalogue(
        models=_models(args, sorted(scratch.VARIANTS)),
        dtypes=args.dtype or ["float32", "float64"],
        seed=args.seed,
        batch_size=args.batch_size,
        data=args.data,
        names=args.only,
        epochs=args.epochs,
        progress=lambda line: print(line, flush=True),
    )
    ok = all(r["caught"] and r["localised"] for r in results if r["expected_caught"])
    print(
        f"{sum(r['caught'] for r in results)} of {len(results)} mutant runs caught; "
        + ("every one that must be caught was caught and localised" if ok else "SOME ESCAPED")
    )
    if args.json is not None:
        write_text_atomic(args.json, json.dumps({"passed": ok, "runs": results}, indent=2) + "\n")
        print(f"wrote {shown(args.json)}")
    return 0 if ok else 1


def run_matrix(args: argparse.Namespace) -> int:
    models = _models(args, [DEFAULT_MODEL])
    if args.out == DEFAULT_MATRIX_OUT:
        args.out.parent.mkdir(exist_ok=True)
    check_output_folder(args.out, "--out")
    config = backend_matrix.MatrixConfig(
        backends=tuple(keras_backends.parse_list(args.backends)),
        models=tuple(models),
        dtypes=tuple(dict.fromkeys(args.dtype or ["float32", "float64"])),
        seed=args.seed,
        batch_size=args.batch_size,
        data=args.data,
        epochs=args.epochs,
        implementation=args.implementation,
    )
    matrix = backend_matrix.run_matrix(config, progress=lambda line: print(line, flush=True))
    print(matrix.frame().to_string(index=False))
    print(matrix.summary())
    print(f"wrote {shown(backend_matrix.write_matrix(matrix, args.out))}")
    return 0 if matrix.passed else 1


def run_calibrate(args: argparse.Namespace) -> int:
    if args.out == DEFAULT_CALIBRATION_OUT:
        args.out.parent.mkdir(exist_ok=True)
    check_output_file(args.out, "--out")

    if args.merge:
        for dest, default in args.measuring_defaults.items():
            if getattr(args, dest) != default:
                option = "--" + dest.replace("_", "-")
                raise InputError(
                    f"--merge combines calibrations already made, so {option} does not apply. "
                    f"Received: {option}={getattr(args, dest)}"
                )
        parts = []
        for path in args.merge:
            part = read_previous(path)
            if part is None:
                raise InputError(f"--merge: no calibration table at {path}")
            parts.append((str(path), part))
        merged = merge(parts, read_previous(args.out))
        return _write_calibration(merged, args.out, [b for _, t in parts for b in t["runs"]])
    table = calibrate(
        validate.seed_range(args.first_seed, args.seeds),
        args.dtype or ["float32", "float64"],
        args.variant or sorted(scratch.VARIANTS),
        batch_size=args.batch_size,
        epochs=args.epochs,
        momentum_epochs=args.momentum_epochs,
        data=args.data,
        safety_factor=args.safety_factor,
        previous=read_previous(args.out),
        progress=lambda line: print(f"measured {line}", flush=True),
    )
    return _write_calibration(table, args.out, [args.backend])


def _write_calibration(table: dict[str, Any], out: Path, written: Sequence[str]) -> int:
    """Print the tolerances of the backends just ``written`` (not the other backends kept from
    ``out``), then write ``table`` to ``out`` atomically."""
    for backend in dict.fromkeys(written):
        for dtype, kinds in table["tolerances"][backend].items():
            for kind, checks in kinds.items():
                for name, tol in checks.items():
                    print(f"{backend:<11} {dtype:<8} {kind:<18} {name:<17} {_describe(tol)}")
    write_text_atomic(out, json.dumps(table, indent=2) + "\n")
    print(f"wrote {shown(out)}")
    return 0


def _describe(tolerance: dict[str, Any]) -> str:
    """One tolerance entry of the table on one line; an envelope by its first and last step."""
    if "at" not in tolerance:
        return f"atol {tolerance['atol']:.1e}  rtol {tolerance['rtol']:.1e}"
    at, atol, rtol = tolerance["at"], tolerance["atol"], tolerance["rtol"]
    return (
        f"atol {atol[0]:.1e}..{atol[-1]:.1e}  rtol {rtol[0]:.1e}..{rtol[-1]:.1e}  "
        f"(steps {at[0]}..{at[-1]})"
    )


def _recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe options given on the command line (None: the model's own)."""
    return {
        "learning_rate": args.learning_rate,
        "momentum": args.momentum,
        "nesterov": args.nesterov,
        "train_batch_size": args.train_batch_size,
    }


def run_spec(args: argparse.Namespace) -> int:
    _output_file(args.json, "--json")
    spec = model_spec(args.model or DEFAULT_MODEL, args.dtype, seed=args.seed, **_recipe(args))
    print(spec.describe())
    print(arrays_table(spec))
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(spec.as_dict(), indent=2) + "\n")
        print(f"wrote {shown(args.json)}")
    return 0


def run_dry(args: argparse.Namespace) -> int:
    breaches = dry_run(
        args.implementation,
        args.model or DEFAULT_MODEL,
        args.dtype,
        seed=0 if args.seed is None else args.seed,
        fresh_weights=None if args.seed is None else True,
        **_recipe(args),
    )
    for line in breaches.lines:
        print(line)
    print(breaches.summary())
    return 0 if breaches.ok else 2


def run_train(args: argparse.Namespace) -> int:
    _output_file(args.json, "--json")
    data = load_data(args.data, seed=args.seed, dtype=args.dtype)
    try:
        model = scratch.build_lenet5(
            args.variant, dtype=args.dtype, seed=args.seed, loss_path=args.loss_path
        )
        optimizer = scratch.SGD(args.learning_rate, momentum=args.momentum, nesterov=args.nesterov)
    except ValueError as exc:  # scratch's argument checks: bad flag values
        raise InputError(str(exc)) from None
    print(f"data: {data.summary()}")
    print(
        f"model: LeNet-5 {args.variant}, {model.count_params():,} params, {args.dtype}, "
        f"loss path {model.loss_path}; SGD lr {args.learning_rate} momentum {args.momentum}"
        f"{' nesterov' if args.nesterov else ''}, batch {args.batch_size}, seed {args.seed}"
    )
    print(
        f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'held-out loss':>13}  "
        f"{'held-out acc':>12}  {'seconds':>7}"
    )

    def show(epoch: int, history: scratch.History) -> None:
        last = slice(len(history.step_loss) - history.steps_per_epoch, None)
        print(
            f"{epoch:>5}  {np.mean(history.step_loss[last]):>10.4f}  "
            f"{np.mean(history.step_accuracy[last]):>9.4f}  "
            f"{history.epoch_heldout_loss[-1]:>13.4f}  "
            f"{history.epoch_heldout_accuracy[-1]:>12.4f}  "
            f"{history.epoch_seconds[-1]:>7.2f}",
            flush=True,
        )

    started = time.perf_counter()
    history = scratch.fit(
        model,
        data.x_train,
        data.y_train,
        optimizer=optimizer,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        heldout=(data.x_heldout, data.y_heldout),
        on_epoch=show,
    )
    print(
        f"final held-out accuracy {history.epoch_heldout_accuracy[-1]:.4f} after {args.epochs} "
        f"epochs; median {np.median(history.epoch_seconds):.2f} s per epoch "
        f"({time.perf_counter() - started:.1f} s in all)"
    )
    if args.json is not None:
        record = {
            "command": "train",
            "config": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(args).items()
                if k not in ("run", "command")
            },
            "data": data.summary(),
            "history": history.as_dict(),
        }
        write_text_atomic(args.json, json.dumps(record, indent=2) + "\n")
        print(f"wrote {shown(args.json)}")
    return 0


def _add_bench(commands: argparse._SubParsersAction) -> None:
    """The ``bench`` command."""
    command = commands.add_parser(
        "bench",
        help="time scratch against every Keras backend: training, inference, memory",
        description="Train the scratch LeNet-5 and the Keras one on each backend (each in its "
        "own process) on the same digits in the same batches from the same weights, float32; "
        "after one warm-up epoch, time --epochs epochs per repeat, the repeats interleaved "
        "across implementations, and print seconds per epoch, images/s, GFLOP/s, its share of "
        "the machine's sgemm rate, peak memory, scratch/backend and inference images/s. "
        "A benchmark: timings depend on the machine and its load. A bar on a terminal. "
        "Exit 0, or 2 on bad input or a failed worker." + _takes("bench"),
        formatter_class=_HelpFormatter,
    )
    command.add_argument(
        "--backends",
        action="append",
        metavar="NAME[,NAME...]",
        help=f"Keras backends to time next to scratch ({', '.join(keras_backends.BACKENDS)}; "
        "repeatable or comma-separated); default: every installed one",
    )
    command.add_argument(
        "--epochs",
        type=arg_type(validate.epochs, minimum=1),
        default=1,
        help="timed epochs per repeat (default 1)",
    )
    command.add_argument(
        "--repeats",
        type=arg_type(validate.repeats),
        default=5,
        help="interleaved repeats; the median and spread are over these (default 5)",
    )
    command.add_argument(
        "--batch-size",
        type=arg_type(validate.batch_size),
        default=256,
        help="digits per training batch (default 256)",
    )
    command.add_argument(
        "--digits",
        type=arg_type(validate.count, name="digits"),
        metavar="N",
        help="train on the first N of the 8,000 bundled training digits (default: all)",
    )
    command.add_argument("--seed", type=SEED, default=0, help="weights, split and batch order")
    command.add_argument(
        "--json",
        type=Path,
        default=bench.DEFAULT_JSON,
        metavar="FILE",
        help=f"every raw timing and the machine (default {bench.DEFAULT_JSON})",
    )
    command.add_argument(
        "--plot",
        type=Path,
        default=bench.DEFAULT_PLOT,
        metavar="FILE",
        help=f"PNG: seconds per epoch and inference images/s, every repeat a point (default "
        f"{bench.DEFAULT_PLOT})",
    )
    command.set_defaults(run=run_bench)


def _output_path(path: Path, default: Path, flag: str) -> None:
    """The default folder is made; any other output folder must exist."""
    if path == default:
        path.parent.mkdir(exist_ok=True)
    check_output_file(path, flag)


def run_bench(args: argparse.Namespace) -> int:
    """The ``bench`` command: run, print the table, write the JSON and the plot."""
    _output_path(args.json, bench.DEFAULT_JSON, "--json")
    _output_path(args.plot, bench.DEFAULT_PLOT, "--plot")
    config = bench.BenchConfig(
        backends=tuple(keras_backends.parse_list(args.backends)),
        epochs=args.epochs,
        repeats=args.repeats,
        batch_size=args.batch_size,
        digits=args.digits,
        seed=args.seed,
    )
    print(f"bench: {', '.join(bench.label(n) for n in config.implementations)}", flush=True)
    result = bench.run(config, progress=lambda line: print(line, flush=True))
    print(result.headline())
    print(result.frame().to_string(index=False))
    bench.write_json(result, args.json)
    bench.plot(result, args.plot)
    print(f"wrote {shown(args.json)} and {shown(args.plot)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if "backend" in args:  # before anything imports Keras
            args.backend = keras_backends.choose(args.backend)
        code: int = args.run(args)
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ImplementationError as exc:  # the user's own code raised: show them where
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
