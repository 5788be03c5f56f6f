"""`engage serve`: the HTTP API (versioned under /v1, its OpenAPI schema the contract) and the web page (needs the
extra 'serve': FastAPI, uvicorn, python-multipart)."""

from typing import TYPE_CHECKING

from engage.lazy import attach

if TYPE_CHECKING:
    from engage.serve.app import ServeSettings, create_app

__getattr__, __dir__, __all__ = attach(__name__, __file__)
