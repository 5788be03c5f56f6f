"""engage's version, defined here only: pyproject.toml reads it (setuptools' dynamic version), the package exports it
as engage.__version__, and model files, datasets and the HTTP API record it. The CHANGELOG lists each release."""

__version__ = "0.3.0"
