"""`fmnist serve`: the request path without HTTP (service.py), its limits (limits.py), the routes (app.py), HTTP
mechanics (http.py), keys and rate limits (access.py), the served model and its identity (model.py), Prometheus
metrics (metrics.py), the micro-batcher (batching.py), uvicorn and workers (server.py), the page (static/)."""
