"""fbench: a benchmarking and ablation harness for facial expression recognition architectures."""

__version__ = "0.1.0"
