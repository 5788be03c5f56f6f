"""`engage serve`: the HTTP API and the web page (needs the extra 'serve': FastAPI, uvicorn, python-multipart)."""
