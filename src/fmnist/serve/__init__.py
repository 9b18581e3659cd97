"""`fmnist serve`: the HTTP API (app.py), the micro-batcher (batching.py), uvicorn (server.py), the page (static/)."""
