"""What a parity check depends on: :class:`CheckConfig` (the ``config`` of the JSON verdict)
and the harness's fixed numbers, each with where it comes from."""

from __future__ import annotations

import dataclasses
from typing import Final

from compare.errors import InputError
from compare.inputs import validate

VARIANTS: Final = ("classic", "keras-docs")  # the reference LeNet-5s (reference.VARIANTS)
DTYPES: Final = ("float32", "float64")
DEFAULT_BATCH_SIZE: Final = 256  # the training batch of the Keras docs recipe
LEARNING_RATE: Final = 0.05  # SGD's learning rate in the Keras docs recipe
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
    """Everything a parity check depends on (the ``config`` of the JSON verdict)."""

    variant: str = "keras-docs"
    dtype: str = "float32"
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    data: str = "bundled"
    weights: str | None = None  # a weights file; None: a fresh initialisation from the seed
    mutant: str | None = None  # the name of the deliberate bug applied to scratch, if any
    epochs: int = 1  # of side-by-side training on identical batches; 0: no training checks
    learning_rate: float = LEARNING_RATE
    momentum: float = 0.0  # SGD's momentum on both sides (Keras's form)
    nesterov: bool = False
    implementation: str = SCRATCH  # "scratch", or the MODULE:FACTORY the user gave

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise InputError(
                f"unknown variant {self.variant!r}; expected one of {', '.join(VARIANTS)}"
            )
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        validate.seed(self.seed)
        validate.batch_size(self.batch_size)
        validate.epochs(self.epochs)
        validate.learning_rate(self.learning_rate)
        validate.momentum(self.momentum)
        if self.nesterov and self.momentum == 0:
            raise InputError("nesterov needs a momentum > 0")
        if self.mutant is not None and self.implementation != SCRATCH:
            raise InputError("a mutant patches the scratch model: it takes no --implementation")

    def optimizer_family(self) -> str | None:
        """Which training envelopes judge this run: plain SGD's (None), or momentum's —
        momentum makes float32 training chaotic sooner, so it has envelopes of its own."""
        return "momentum" if self.momentum else None
