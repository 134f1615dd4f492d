"""compare: the only package that knows both scratch and Keras: data, weights, checks, report,
CLI. Data flows one way: data + weights -> scratch and reference -> compare -> reports.

For users' own tests: :func:`check_parity` returns the verdict, :func:`assert_parity` raises an
``AssertionError`` whose message is the verdict's table unless parity holds.
"""

__version__ = "0.1.0"

from compare.parity import Verdict, assert_parity, check_parity

__all__ = ["Verdict", "__version__", "assert_parity", "check_parity"]
