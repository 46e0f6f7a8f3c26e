"""The cloud's storage, split by concern over one engine (base)."""
