"""psymon's HTTP API (FastAPI): ingest now; alerts and web views with the store."""
