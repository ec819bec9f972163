"""Model registries: SQL databases through SQLAlchemy (SQLite by default, PostgreSQL)."""

from openanomaly.adapters.model_registry.sql import SqlRegistry

__all__ = ["SqlRegistry"]
