"""compare: the only package that knows both scratch and Keras: data, weights, checks, report,
CLI. Data flows one way: data + weights -> scratch and reference -> compare -> reports."""

__version__ = "0.1.0"
