"""Hyperparameter search and controlled comparisons over keras_cnn.train (KerasTuner underneath)."""

from tuning.search import SearchFailed, run_search
from tuning.spaces import Space, load_space

__all__ = ["SearchFailed", "Space", "load_space", "run_search"]
