"""Metrics writers: Prometheus remote write."""
