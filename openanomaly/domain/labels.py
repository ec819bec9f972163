"""Labels of the series OpenAnomaly writes, built from the labels of the series it read.

Rules (remote write 1.0 and Prometheus conventions):
- the input's metric name (`__name__`) is kept as the label `metric`;
- labels we set (`pipeline`, `model`, `output.labels`, and `metric` itself) win; an input label
  with one of those names is kept as `exported_<name>` (as Prometheus does with honor_labels off);
- names are made valid (`[a-zA-Z_][a-zA-Z0-9_]*`, invalid characters become `_`); empty values
  are dropped (Prometheus treats an empty label as an absent one);
- the result is sorted by name with unique names, ready to encode.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LabelTuple = tuple[tuple[str, str], ...]
"""Sorted, unique, valid labels: hashable, so encoders can cache per series."""

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")

OUTPUT_KINDS = ("score", "yhat", "yhat_lower", "yhat_upper")


def sanitize_label_name(name: str) -> str:
    fixed = _INVALID_LABEL_CHARS.sub("_", name)
    if not fixed or fixed[0].isdigit():
        fixed = "_" + fixed
    return fixed


def sanitize_metric_name(name: str) -> str:
    fixed = _INVALID_METRIC_CHARS.sub("_", name)
    if not fixed or fixed[0].isdigit():
        fixed = "_" + fixed
    return fixed


def escape_label_value(value: str) -> str:
    """`value` escaped for a double-quoted PromQL label value (`job="..."`): backslash, double
    quote and newline, as PromQL reads them back. The quotes themselves are the caller's."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def output_labels(
    metric_name: str,
    input_labels: Mapping[str, str],
    own: Mapping[str, str],
) -> LabelTuple:
    """Labels of one output series: `own` (pipeline, model, output.labels) win collisions."""
    result: dict[str, str] = {}
    for key, value in own.items():
        if value:
            result[sanitize_label_name(key)] = value
    taken = set(result) | {"__name__"}
    # The input's metric name claims `metric` before any input label named `metric` does, and
    # input labels go in name order, so the same input always gives the same output.
    ordered = sorted(input_labels.items(), key=lambda item: (item[0] != "__name__", item[0]))
    for raw_name, value in ordered:
        if not value:
            continue
        name = "metric" if raw_name == "__name__" else sanitize_label_name(raw_name)
        while name in taken:
            name = "exported_" + name
        taken.add(name)
        result[name] = value
    result["__name__"] = sanitize_metric_name(metric_name)
    return tuple(sorted(result.items()))


def output_series_labels(
    prefix: str, input_labels: Mapping[str, str], own: Mapping[str, str]
) -> dict[str, LabelTuple]:
    """The four output series of one input series, by kind (score, yhat, ...)."""
    return {kind: output_labels(f"{prefix}_{kind}", input_labels, own) for kind in OUTPUT_KINDS}


def check_label_tuple(labels: LabelTuple) -> None:
    """Raise ValueError unless labels are what remote write requires: sorted by name, unique,
    valid names, a valid metric name, no empty values."""
    previous = ""
    for name, value in labels:
        if name <= previous and previous:
            raise ValueError(f"labels not sorted or repeated at {name!r}: {labels}")
        if name == "__name__":
            if not _METRIC_NAME.match(value):
                raise ValueError(f"invalid metric name {value!r}")
        elif not _LABEL_NAME.match(name):
            raise ValueError(f"invalid label name {name!r}")
        if value == "":
            raise ValueError(f"label {name!r} has an empty value")
        previous = name
    if not any(name == "__name__" for name, _ in labels):
        raise ValueError(f"labels have no metric name (__name__): {labels}")
