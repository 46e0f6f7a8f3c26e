"""Cloud service: authenticated gRPC ingest, idempotent storage, verification and the query API."""
