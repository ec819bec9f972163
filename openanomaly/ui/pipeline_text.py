"""Pipeline YAML as the Playground handles it: the starting template, an existing pipeline
dumped back to YAML, a second model swapped in for a comparison, and the few fields the page
reads itself (name, output prefix, step, model). Validation proper is the daemon's job
(POST /api/v1/validate); this only reads what it must to build requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import yaml

from openanomaly.durations import DurationError, parse_duration
from openanomaly.ui.errors import InvalidModelSection

TEMPLATE = """\
# A pipeline: every series the query returns gets its own model, band and score.
# Validate it, backtest it on your TSDB's history, then save it to pipelines.d.
name: my-pipeline
query: sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[1h]))
step: 1h                  # one point an hour: quick to backtest; a day is 24 steps
train:
  every: 1d               # refit daily
  window: 14d             # on the last two weeks
infer:
  every: 5m
  context: 2d
model:
  engine: statsforecast
  name: MSTL
  params:
    season_length: 1d     # daily cycle
  level: 99
scoring:
  direction: both         # both | above | below
output:
  prefix: anomaly         # writes anomaly_score, anomaly_yhat, anomaly_yhat_lower/_upper
"""

MODEL_B_DEFAULT = (
    "model:\n  engine: statsforecast\n  name: AutoETS\n  params:\n    season_length: 1d\n"
)


@dataclass(frozen=True)
class Outline:
    """What the page needs to know of one pipeline in the editor."""

    name: str
    prefix: str = "anomaly"
    step: timedelta | None = None
    model: str = "statsforecast MSTL"


def state_yaml(pipeline: Mapping[str, Any]) -> str:
    """The API's `State.pipeline` as a pipeline file (durations are already `5m` strings)."""
    return yaml.safe_dump(dict(pipeline), sort_keys=False, allow_unicode=True)


def pipeline_file(yaml_text: str, name: str) -> str:
    """The text to save as pipeline `name`'s own file. The daemon saves a file only when it
    defines exactly that one pipeline: from a `pipelines:` list of several, `name`'s mapping
    alone as a standalone document (comments are not kept); any other text as it is."""
    data = _load(yaml_text)
    items = data.get("pipelines")
    if not isinstance(items, list) or len(items) < 2:
        return yaml_text
    return yaml.safe_dump(_find(data, name), sort_keys=False, allow_unicode=True)


def outline(yaml_text: str, name: str) -> Outline:
    """Name, prefix, step and model of pipeline `name` in the text (defaults where absent)."""
    data = _find(_load(yaml_text), name)
    output = _mapping(data.get("output"))
    model = _mapping(data.get("model"))
    try:
        step = parse_duration(str(data["step"])) if "step" in data else timedelta(minutes=1)
    except DurationError:
        step = None
    engine, model_name = model.get("engine", "statsforecast"), model.get("name", "MSTL")
    return Outline(name, str(output.get("prefix", "anomaly")), step, f"{engine} {model_name}")


def with_model(yaml_text: str, model_text: str, pipeline: str | None = None) -> str:
    """The pipeline text with its `model:` section replaced by the one in `model_text` (a
    mapping with a `model` key, or the model mapping itself). Comments are not kept."""
    try:
        model = yaml.safe_load(model_text)
    except yaml.YAMLError as exc:
        raise InvalidModelSection(f"model B is not YAML: {_first_line(exc)}") from None
    if isinstance(model, dict) and set(model) == {"model"}:
        model = model["model"]
    if not isinstance(model, dict) or not model:
        raise InvalidModelSection("model B must be a `model:` section (engine, name, params)")
    data = _load(yaml_text)
    if isinstance(data.get("pipelines"), list):
        names = [p.get("name") for p in data["pipelines"] if isinstance(p, dict)]
        target = pipeline if pipeline is not None else (names[0] if len(names) == 1 else None)
        if target is None:
            raise InvalidModelSection("the YAML defines several pipelines; pick one to compare")
        data = _find(data, target)
    return yaml.safe_dump({**data, "model": model}, sort_keys=False, allow_unicode=True)


def _load(yaml_text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(yaml_text)
    except yaml.YAMLError as exc:
        raise InvalidModelSection(f"the pipeline is not YAML: {_first_line(exc)}") from None
    if not isinstance(data, dict):
        raise InvalidModelSection("the pipeline YAML must be a mapping (name, query, ...)")
    return data


def _find(data: dict[str, Any], name: str) -> dict[str, Any]:
    if not isinstance(data.get("pipelines"), list):
        return data
    for item in data["pipelines"]:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    raise InvalidModelSection(f"no pipeline named {name!r} in the YAML")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
