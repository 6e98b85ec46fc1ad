"""codl: run one deep-learning inference on the CPU and a GPU at the same time."""

__version__ = "0.1.0"
