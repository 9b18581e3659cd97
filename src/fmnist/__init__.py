"""fmnist: fast, reproducible Fashion-MNIST training, evaluation and profiling on PyTorch."""

__version__ = "0.1.0"
