"""What a parity check depends on: :class:`CheckConfig` (the ``config`` of the JSON verdict)
and the harness's fixed numbers, each with where it comes from."""

from __future__ import annotations

import dataclasses
from typing import Final

from compare.errors import InputError
from compare.inputs import validate

# The reference LeNet-5s (reference.VARIANTS): the models the calibrated tolerance table knows.
VARIANTS: Final = ("classic", "keras-docs")
DEFAULT_MODEL: Final = "keras-docs"
DTYPES: Final = ("float32", "float64")
INPUT_SCALINGS: Final = ("unit", "centered")  # pixels / 255, or pixels / 255 - 0.5
# Who judges: the calibrated tolerance table (the two LeNet-5s only), or the float64 judge
# (compare.judge.float64: any model, no calibration); "auto" resolves to the table for the
# LeNet-5s and to the float64 judge for every other model.
JUDGES: Final = ("auto", "table", "float64")
# The finite differences' tolerance under the float64 judge: the central difference at
# h = 1e-5 in float64 (compare/parity/finite_difference.py) has a truncation error of about
# h**2 / 6 times the third derivative and a round-off of about eps * |loss| / h, both below
# 1e-10 for a loss of order 1; these are the calibrated LeNet-5 table's finite-difference
# tolerances on TensorFlow (atol 4.3e-10, rtol 4.8e-6, 20 seeds) doubled and rounded up.
FD_ATOL: Final = 1e-9
FD_RTOL: Final = 1e-5
# The one-sided differences' tolerance (used where every central difference straddles a relu
# kink): their error coefficients are 4x the central one's in round-off (4 eps |f| / h) and 2x
# in truncation (h**2 |f3| / 3), compare/parity/finite_difference.py, so 4x the central
# tolerance; measured by `python -m compare.tools.fd_study` (docs/checks.md).
FD_ONE_SIDED_ATOL: Final = 4 * FD_ATOL
FD_ONE_SIDED_RTOL: Final = 4 * FD_RTOL
DEFAULT_BATCH_SIZE: Final = 256  # the layer and gradient checks' batch (the Keras docs' batch)
LEARNING_RATE: Final = 0.05  # SGD's learning rate in the Keras docs recipe
# The default training: one epoch or this many steps, whichever is shorter. A batch-1 epoch of
# the bundled 8,000 digits is 8,000 steps (1.9-2.9 ms per Keras step, measured: 15-23 s on the
# reference alone); 200 steps keep such a model's check within seconds.
DEFAULT_MAX_STEPS: Final = 200
# The training batch of a model whose recipe names none: keras.Model.fit's default batch_size.
KERAS_FIT_BATCH_SIZE: Final = 32
SCRATCH: Final = "scratch"  # the implementation label of the project's own model
# Finite differences per tensor (2 loss evaluations per tried entry): FD_ENTRIES kink-free
# entries out of at most FD_MAX_TRIES tried ...
FD_ENTRIES: Final = 5
FD_MAX_TRIES: Final = 40
# ... on the first FD_BATCH digits of the batch: every tried entry costs two forward passes,
# and 32 digits make them 8× cheaper than 256 (a whole check: 5.5 s at 256, 1.2 s at 32).
FD_BATCH: Final = 32


@dataclasses.dataclass(frozen=True)
class CheckConfig:
    """Everything a parity check depends on (the ``config`` of the JSON verdict), resolved:
    the recipe's values where no option replaced them."""

    model: str = DEFAULT_MODEL  # a zoo name, FILE.keras or MODULE:BUILDER
    dtype: str = "float32"
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE  # the layer and gradient checks' batch
    data: str = "bundled"
    weights: str | None = None  # a weights file; None: the model's own, else from the seed
    fresh_weights: bool = True  # weights from the seed (a model file's own are not used)
    mutant: str | None = None  # the name of the deliberate bug applied to scratch, if any
    # Training on identical batches: `epochs` epochs cut at `steps` steps (either may be None,
    # not both); epochs=0: no training checks.
    epochs: int | None = 1
    steps: int | None = DEFAULT_MAX_STEPS
    train_batch_size: int = DEFAULT_BATCH_SIZE  # the recipe's training batch
    learning_rate: float = LEARNING_RATE
    momentum: float = 0.0  # SGD's momentum on both sides (Keras's form)
    nesterov: bool = False
    input_scaling: str = "unit"
    implementation: str = SCRATCH  # "scratch", or the MODULE:FACTORY the user gave
    # "table" or "float64"; "auto" (JUDGES) is resolved here: the table for the LeNet-5s
    judge: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise InputError(
                f"a model is a zoo name, FILE.keras or MODULE:BUILDER. "
                f"Received: model={self.model!r}"
            )
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        if self.input_scaling not in INPUT_SCALINGS:
            raise InputError(
                f"unknown input scaling {self.input_scaling!r}; expected one of "
                f"{', '.join(INPUT_SCALINGS)}"
            )
        if self.judge == "auto":  # frozen: resolved once, here, so the verdict says who judged
            object.__setattr__(self, "judge", "table" if self.model in VARIANTS else "float64")
        if self.judge not in JUDGES[1:]:
            raise InputError(
                f"unknown judge {self.judge!r}; expected one of {', '.join(JUDGES[1:])}"
            )
        if self.judge == "table" and self.model not in VARIANTS:
            raise InputError(
                f"the calibrated tolerance table knows only the LeNet-5s ({', '.join(VARIANTS)}); "
                f"model {self.model!r} is judged by the float64 judge (--judge float64)"
            )
        validate.seed(self.seed)
        validate.batch_size(self.batch_size)
        validate.batch_size(self.train_batch_size, "train_batch_size")
        if self.epochs is None and self.steps is None:
            raise InputError("training needs epochs or steps (epochs=0: no training)")
        if self.epochs is not None:
            validate.epochs(self.epochs)
        if self.steps is not None:
            validate.step_count(self.steps)
        validate.learning_rate(self.learning_rate)
        validate.momentum(self.momentum)
        if self.nesterov and self.momentum == 0:
            raise InputError("nesterov needs a momentum > 0")
        if self.mutant is not None and self.implementation != SCRATCH:
            raise InputError("a mutant patches the scratch model: it takes no --implementation")

    @property
    def variant(self) -> str:
        """The LeNet-5 variant, for what only the two LeNet-5s have (the calibrated table,
        the mutant catalogue's layer names); InputError for any other model."""
        if self.model not in VARIANTS:
            raise InputError(f"model {self.model!r} is not a LeNet-5 ({', '.join(VARIANTS)})")
        return self.model

    @property
    def trains(self) -> bool:
        return self.epochs != 0 and self.steps != 0

    def optimizer_family(self) -> str | None:
        """Which training envelopes judge this run: plain SGD's (None), or momentum's —
        momentum makes float32 training chaotic sooner, so it has envelopes of its own."""
        return "momentum" if self.momentum else None
