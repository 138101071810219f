"""Serving: a FastAPI app over trained model folders, with Prometheus metrics and health probes."""
