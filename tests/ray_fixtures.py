"""The local Ray of the tests of `engage batch` (a pytest plugin: `pytest_plugins = ["ray_fixtures"]`)."""

from __future__ import annotations

import pytest

EXTRA = "needs the extra 'cluster' (Ray Data, pyarrow): pip install 'engage[cluster]'"


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray with 2 CPUs for the whole module; run_batch uses the session it finds."""
    ray = pytest.importorskip("ray", reason=EXTRA)
    pytest.importorskip("pyarrow", reason=EXTRA)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
