"""Metrics readers: the Prometheus HTTP query API."""
