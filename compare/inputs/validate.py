"""The one set of number validators, for API arguments and command-line flags alike.

Every number that reaches NumPy, a Keras backend or an allocation goes through one of these
first. Each has a documented range; the maxima are named constants below, with the reason for
each. A bad value raises :class:`RangeError` (an :class:`~compare.errors.InputError`, so a
``ValueError``) with one line::

    seed must be an integer >= 0 and <= 4294967295 (NumPy's seed limit). Received: seed=-1

The command line (:mod:`compare.cli`, the only module that knows argparse) turns each validator
into a ``type=`` that says the same range (``expected an integer >= 1 and <= 65536, got
'0'``), which argparse prefixes with the flag.

Integers must be ``int`` or NumPy integers (never ``bool``, never a float such as ``5.0``);
real numbers may be ints or floats but must be finite. Nothing here allocates.
"""

from __future__ import annotations

import math
import numbers
from typing import Final, TypeVar

from compare.errors import InputError

# NumPy's legacy generator takes seeds 0..2**32 - 1 ("Seed must be between 0 and 2**32 - 1",
# numpy.random.RandomState.seed), and it is seeded on every backend: by
# keras.utils.set_random_seed (keras/src/utils/rng_utils.py: random.seed, np.random.seed,
# tf.random.set_seed, torch.manual_seed) on TensorFlow and by reference.model.seed_host on JAX
# and torch. TensorFlow (int64) and torch (uint64) take more; NumPy's limit is the smallest.
MAX_SEED: Final = 2**32 - 1
# Epochs of any training run (train, check, calibrate, bench, mutants, matrix). The Keras docs
# recipe trains 20; calibration envelopes reach 5 (check's training comparison is further
# bounded by the calibrated envelope's last step); a schedule keeps one permutation of the
# training set per epoch, so 100 epochs of Keras's 60,000 digits are 48 MB of indices.
MAX_EPOCHS: Final = 100
# A batch larger than any training set here (Keras's MNIST: 60,000) is never needed.
MAX_BATCH_SIZE: Final = 65_536
# Optimizer steps of one run (epochs x batches per epoch): every step keeps a few float64
# records (loss, accuracy, tolerance envelope), 1,000,000 steps ~ 40 MB.
MAX_STEPS: Final = 1_000_000
# Interleaved repeats of the bench (each one epoch or more of every implementation).
MAX_REPEATS: Final = 1_000
# Seeds of one calibration (the shipped tables used 100; every seed is a full check).
MAX_SEEDS: Final = 10_000
# Synthetic examples: the generator keeps a few float64 copies of (N, 28, 28), 6 KB per
# example each; 70,000 (MNIST's size) stay under 2 GB.
MAX_SYNTHETIC: Final = 70_000
# Float flags: the calibration's safety factor (tolerance = factor x largest disagreement).
MIN_SAFETY_FACTOR: Final = 1.0
MAX_SAFETY_FACTOR: Final = 1e6

_SEED_WHY: Final = "NumPy's seed limit"
T = TypeVar("T")


class RangeError(InputError):
    """A number outside its range. ``name`` and ``expected`` (``"an integer >= 1 and <=
    65536"``) let the command line say it in argparse's words."""

    def __init__(self, name: str, expected: str, value: object) -> None:
        self.name = name
        self.expected = expected
        self.value = value
        super().__init__(f"{name} must be {expected}. Received: {name}={_show(value)}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int_range(minimum: int, maximum: int | None, why: str) -> str:
    text = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    return f"{text} ({why})" if why else text


def integer(value: object, name: str, *, minimum: int, maximum: int | None, why: str = "") -> int:
    """``value`` as an ``int`` if it is an integer (``int`` or NumPy integer, not ``bool``) in
    ``minimum..maximum`` (``maximum`` None: no upper limit, for counts bounded by data)."""
    expected = _int_range(minimum, maximum, why)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RangeError(name, expected, value)
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        raise RangeError(name, expected, value)
    return number


def real(
    value: object,
    name: str,
    *,
    minimum: float,
    maximum: float = math.inf,
    above_minimum: bool = False,
    below_maximum: bool = False,
    why: str = "",
) -> float:
    """``value`` as a ``float`` if it is a finite real number (not ``bool``) in the range:
    ``>= minimum`` (``> minimum`` when ``above_minimum``) and ``<= maximum`` (``<`` when
    ``below_maximum``)."""
    low = f"> {minimum:g}" if above_minimum else f">= {minimum:g}"
    high = ""
    if maximum != math.inf:
        high = f" and < {maximum:g}" if below_maximum else f" and <= {maximum:g}"
    expected = f"a finite number {low}{high}" + (f" ({why})" if why else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RangeError(name, expected, value)
    number = float(value)
    if not math.isfinite(number):
        raise RangeError(name, expected, value)
    if number < minimum or (above_minimum and number == minimum):
        raise RangeError(name, expected, value)
    if number > maximum or (below_maximum and number == maximum):
        raise RangeError(name, expected, value)
    return number


# -- the named quantities ---------------------------------------------------------------------
def seed(value: object, name: str = "seed") -> int:
    """A random seed: 0..:data:`MAX_SEED`."""
    return integer(value, name, minimum=0, maximum=MAX_SEED, why=_SEED_WHY)


def seed_range(first: object, count: object, name: str = "seeds") -> range:
    """``count`` seeds from ``first`` (``first .. first + count - 1``), every one a valid seed
    and at most :data:`MAX_SEEDS` of them."""
    start = seed(first, "first seed")
    n = seed_count(count, name)
    if start + n - 1 > MAX_SEED:
        raise InputError(
            f"the last seed ({start} + {n} - 1 = {start + n - 1}) is above {MAX_SEED} "
            f"({_SEED_WHY}). Received: first seed={start}, {name}={n}"
        )
    return range(start, start + n)


def seed_count(value: object, name: str = "seeds") -> int:
    """How many seeds: 1..:data:`MAX_SEEDS`."""
    return integer(value, name, minimum=1, maximum=MAX_SEEDS)


def epochs(value: object, name: str = "epochs", *, minimum: int = 0) -> int:
    """Epochs of training: ``minimum`` (0: no training, or 1)..:data:`MAX_EPOCHS`."""
    return integer(value, name, minimum=minimum, maximum=MAX_EPOCHS)


def batch_size(value: object, name: str = "batch_size") -> int:
    """Examples per batch: 1..:data:`MAX_BATCH_SIZE`."""
    return integer(value, name, minimum=1, maximum=MAX_BATCH_SIZE)


def step_count(value: object, name: str = "steps", *, minimum: int = 0) -> int:
    """Optimizer steps of training: ``minimum`` (0: no training)..:data:`MAX_STEPS`."""
    return integer(value, name, minimum=minimum, maximum=MAX_STEPS)


def steps(n_epochs: int | None, examples: int, size: int, limit: int | None = None) -> int:
    """Optimizer steps of ``n_epochs`` over ``examples`` in batches of ``size`` (the last batch
    of an epoch may be short), cut at ``limit`` steps (``n_epochs=None``: ``limit`` steps, as
    many epochs as they take), if at most :data:`MAX_STEPS`; check it before building any
    schedule. The numbers are validated first."""
    examples = integer(examples, "examples", minimum=0, maximum=None)
    size = batch_size(size)
    if limit is not None:
        limit = step_count(limit)
    if n_epochs is None:
        if limit is None:
            raise InputError("training needs a number of epochs or of steps")
        return limit
    n_epochs = epochs(n_epochs)
    total = n_epochs * -(-examples // size)
    if limit is not None:
        return min(total, limit)
    if total > MAX_STEPS:
        raise InputError(
            f"{n_epochs} epochs of {examples} examples in batches of {size} are {total:,} "
            f"steps, more than {MAX_STEPS:,}: train fewer epochs or use larger batches"
        )
    return total


def repeats(value: object, name: str = "repeats") -> int:
    """Repeats of a measurement: 1..:data:`MAX_REPEATS`."""
    return integer(value, name, minimum=1, maximum=MAX_REPEATS)


def count(value: object, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """A count bounded by something else (the data, a catalogue): ``minimum``..``maximum``."""
    return integer(value, name, minimum=minimum, maximum=maximum)


def n_synthetic(value: object, name: str = "n_synthetic") -> int:
    """Synthetic examples: 2 (a train and a held-out one)..:data:`MAX_SYNTHETIC`."""
    return integer(value, name, minimum=2, maximum=MAX_SYNTHETIC)


def learning_rate(value: object, name: str = "learning_rate") -> float:
    """SGD's learning rate: finite and > 0."""
    return real(value, name, minimum=0.0, above_minimum=True)


def momentum(value: object, name: str = "momentum") -> float:
    """SGD's momentum (Keras's form): in [0, 1)."""
    return real(value, name, minimum=0.0, maximum=1.0, below_maximum=True)


def tolerance(value: object, name: str = "tolerance") -> float:
    """An absolute or relative tolerance: finite and >= 0."""
    return real(value, name, minimum=0.0)


def safety_factor(value: object, name: str = "safety_factor") -> float:
    """The calibration's safety factor: :data:`MIN_SAFETY_FACTOR`..:data:`MAX_SAFETY_FACTOR`."""
    return real(value, name, minimum=MIN_SAFETY_FACTOR, maximum=MAX_SAFETY_FACTOR)


def parse_number(text: str) -> int | float | str:
    """Command-line text as an ``int`` when it is one (``"7"``), else as a ``float``
    (``"0.9"``, ``"1e-3"``), else the text itself, which every validator then refuses with its
    range. Integers stay exact however large (``"4294967296"``: refused by :func:`seed`, never
    wrapped)."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text
