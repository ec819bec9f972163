"""A ready-to-paste alert rule for one pipeline, in Prometheus' rule file format (vmalert reads
the same). It is deploy/rules/openanomaly.rules.yml's AnomalyDetected narrowed to one pipeline
and its output prefix; see the comments there for why `>= 1` with `last_over_time` and `for`."""

from __future__ import annotations

import json
from datetime import timedelta

import yaml

from openanomaly.domain.labels import escape_label_value
from openanomaly.durations import format_duration

WINDOW = timedelta(minutes=10)  # bridges the gap between two written points
HOLD = timedelta(minutes=5)  # the rule's `for`: shorter excursions do not alert

_TEMPLATE = """\
# Alert rule for pipeline @NAME@: add this group to a rule file that Prometheus
# (rule_files) or vmalert (-rule) loads. It fires while a series of the pipeline stays outside
# its forecast band for @HOLD@. Check it with: promtool check rules FILE
groups:
  - name: @GROUP@
    interval: 1m
    rules:
      - alert: AnomalyDetected
        expr: @EXPR@
        for: @HOLD@
        labels:
          severity: warning
        annotations:
          summary: >-
            Anomaly in pipeline {{ $labels.pipeline }}{{ with $labels.metric }} on {{ . }}{{ end }}
          description: >-
            The series {{ range $k, $v := $labels }}{{ if ne $k "__name__" }}{{ $k }}={{ $v }}
            {{ end }}{{ end }}of pipeline {{ $labels.pipeline }} (model {{ $labels.model }})
            has been outside its forecast band for at least @HOLD@. Its anomaly score is
            {{ $value | printf "%.2f" }} (1 = band edge; after the first point over 1 the score
            is capped at 1 for scoring.holdoff).
"""


def alert_rule(pipeline_name: str, prefix: str = "anomaly", step: timedelta | None = None) -> str:
    """The rule group as YAML text. With the pipeline's `step`, the window and `for` grow for
    coarse steps as the deploy file's comments advise (one point must not alert alone)."""
    window, hold = WINDOW, HOLD
    if step is not None:
        window = max(WINDOW, 2 * step)
        hold = HOLD if step < HOLD else 2 * step
    name = escape_label_value(pipeline_name)
    expr = f'last_over_time({prefix}_score{{pipeline="{name}"}}[{format_duration(window)}]) >= 1'
    # Placeholders rather than str.format: the annotations are full of Go template braces.
    values = {
        "@NAME@": pipeline_name.replace("\n", " "),
        "@GROUP@": _scalar(f"openanomaly-{pipeline_name}"),
        "@EXPR@": _scalar(expr),
        "@HOLD@": format_duration(hold),
    }
    text = _TEMPLATE
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def _scalar(text: str) -> str:
    """`text` as a YAML scalar: plain when YAML reads it back unchanged, else double-quoted
    (a JSON string is a valid YAML double-quoted scalar)."""
    try:
        if yaml.safe_load(f"k: {text}") == {"k": text}:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(text)
