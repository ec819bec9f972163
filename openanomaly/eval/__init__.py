"""Offline evaluation of detectors against labelled benchmarks (NAB)."""
