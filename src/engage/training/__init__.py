"""Training: one loop for every network and task, its augmentation, cross-validation of a recipe, and the paper's
comparison of models (`engage compare`), which trains each one on the same subject folds."""

from typing import TYPE_CHECKING

from engage.lazy import attach

if TYPE_CHECKING:
    from engage.training.compare import ModelSpec, run_comparison
    from engage.training.crossval import cross_validate
    from engage.training.loop import TrainConfig, TrainResult, train

__getattr__, __dir__, __all__ = attach(__name__, __file__)
