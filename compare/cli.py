"""The ``lenet-parity`` command.

Exit codes: 0 success, 1 parity fails (from the ``check`` command, which arrives with the parity
issue), 2 bad input or usage — always one line on stderr, never a traceback.

Commands today:
- ``train``: train the scratch LeNet-5 with the Keras docs recipe on real digits and print its
  learning curve (optionally as JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np

import scratch
from compare import __version__
from compare.data import load_data
from compare.errors import InputError

PROG = "lenet-parity"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Check, layer by layer, that a from-scratch NumPy LeNet-5 computes what "
        "Keras computes.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train the scratch LeNet-5 (Keras docs recipe) on real digits and print its curve",
        description="Train the scratch LeNet-5 with SGD on real MNIST digits and print the "
        "training and held-out loss and accuracy after every epoch.",
    )
    train.add_argument("--variant", choices=sorted(scratch.VARIANTS), default="keras-docs")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument("--epochs", type=_int_at_least(1), default=20)
    train.add_argument("--batch-size", type=_int_at_least(1), default=256)
    train.add_argument("--learning-rate", type=_finite_float, default=0.05)
    train.add_argument("--momentum", type=_finite_float, default=0.0)
    train.add_argument("--nesterov", action="store_true")
    train.add_argument(
        "--loss-path",
        choices=("logits", "probabilities"),
        default="logits",
        help="cross-entropy as Keras computes it on TensorFlow (logits) or JAX/torch "
        "(clipped probabilities); default: logits",
    )
    train.add_argument("--seed", type=_int_at_least(0), default=0, help="weights, split, shuffle")
    train.add_argument(
        "--data",
        default="bundled",
        metavar="bundled|keras|synthetic|PATH",
        help="bundled: the 10,000 digits shipped with lenet-parity (8,000 train / 2,000 "
        "held out); keras: full MNIST from Keras's cache (~/.keras/datasets/mnist.npz, never "
        "downloaded); synthetic: tiny generated data; PATH: an .npz file",
    )
    train.add_argument("--json", type=Path, metavar="FILE", help="also write the history here")
    train.set_defaults(run=run_train)
    return parser


def run_train(args: argparse.Namespace) -> int:
    if args.json is not None and not args.json.parent.is_dir():
        raise InputError(f"--json: folder {args.json.parent} does not exist")
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
        print(f"wrote {args.json}")
    return 0


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half
    of one: a temporary file in the same folder, then an atomic rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the usual new-file mode
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        code: int = args.run(args)
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
