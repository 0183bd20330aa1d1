"""The gateway's REST front (FastAPI): TF Serving's URLs, the friendly classify API, operations."""
