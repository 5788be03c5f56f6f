"""Data sets: readers for the forms users have (folders, manifest CSV, fer2013.csv), the face dataset file,
pre-processing (`engage preprocess`) and subject splits. Knows nothing of models."""

from typing import TYPE_CHECKING

from engage.lazy import attach

if TYPE_CHECKING:
    from engage.data.dataset import FaceDataset, concatenate
    from engage.data.preprocess import PreprocessOptions, PreprocessResult, run_preprocess
    from engage.data.readers import Sample, SampleList, read_samples
    from engage.data.splits import check_no_leak, grouped_kfold, subject_split

__getattr__, __dir__, __all__ = attach(__name__, __file__)
