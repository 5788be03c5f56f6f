"""`engage batch`: many videos and images scored on Ray (extra 'cluster'), on this machine or a cluster.

The data flow, one module each: sources.py (what to score, what is already done) -> tasks.py (decode and
detect, one CPU task per source) -> scoring.py (an actor pool that holds the model once per worker) ->
assemble.py (face ids' smoothing in frame order, the rows of `engage predict --csv`) -> store.py (Parquet
partitioned by source, written atomically, with a completion marker; the summary and failures tables).
runner.py ties them together: `run_batch(sources, out_dir, BatchOptions(...))`.
"""

from typing import TYPE_CHECKING

from engage.lazy import attach

if TYPE_CHECKING:
    from engage.cluster.options import BatchOptions
    from engage.cluster.runner import BatchRun, run_batch

__getattr__, __dir__, __all__ = attach(__name__, __file__)
