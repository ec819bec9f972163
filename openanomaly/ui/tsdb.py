"""What the pages read from the TSDB: a pipeline's actual series next to its forecast, band and
score, and the anomalies of the last 24 hours.

Reads go through `PrometheusReader`, so the settings' auth, tenancy headers and TLS apply.
Joining input and output series is pure (`join_series`): an output series belongs to the input
series whose labels it carries (docs: openanomaly/domain/labels.py), so the input's labels are
turned into output labels the same way the writer does and compared without `__name__` and
`model` (the model's name changes when the pipeline's model does; the series stays the same).

Output series are read so that every written point shows (and counts) once, on Prometheus and
VictoriaMetrics alike. A range query evaluates a selector at every step and takes the newest
sample within the lookback (Prometheus: 5 minutes; VictoriaMetrics: about one step more), so a
point before a gap, or the newest one, would come back at the next steps too: red points and
table rows repeated, a count up to 5 times too high at step 1m. `fresh(S, step)` keeps a value at
evaluation time t only when its sample was written within (t - step, t]: `S and timestamp(S) >
time() - step`. The daemon writes points on multiples of the step, where the reads evaluate, so
each point shows at exactly one step and nowhere else; a read at a coarser step keeps the newest
point of each step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from openanomaly.config.settings import RetrySettings, TSDBSettings
from openanomaly.domain.labels import OUTPUT_KINDS, escape_label_value, output_labels
from openanomaly.domain.series import SeriesFrame
from openanomaly.durations import format_duration, parse_duration
from openanomaly.errors import OpenAnomalyError, TSDBQueryError, TSDBUnavailable
from openanomaly.ports import MetricsReader
from openanomaly.ui.errors import TsdbQueryRefused, TsdbUnavailable
from openanomaly.ui.matchers import LabelFilter

POINT_COLUMNS = ("ds", "y", "yhat", "yhat_lower", "yhat_upper", "score")
# Labels the writer adds or that vary for one and the same series; they never tell series apart.
_NOT_IDENTITY = ("__name__", "model")
LabelKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PipelineFacts:
    """The parts of a pipeline (the API's `State.pipeline`) the TSDB reads need."""

    name: str
    query: str
    step: timedelta
    prefix: str = "anomaly"
    output_labels: dict[str, str] = field(default_factory=dict)
    model_name: str = ""
    max_series: int = 10_000

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PipelineFacts:
        output = data.get("output") or {}
        return cls(
            name=str(data["name"]),
            query=str(data["query"]),
            step=parse_duration(str(data.get("step", "1m"))),
            prefix=str(output.get("prefix", "anomaly")),
            output_labels={str(k): str(v) for k, v in (output.get("labels") or {}).items()},
            model_name=str((data.get("model") or {}).get("name", "")),
            max_series=int((data.get("limits") or {}).get("max_series", 10_000)),
        )

    def own_labels(self) -> dict[str, str]:
        """The labels the writer adds to every output series of this pipeline."""
        return {"pipeline": self.name, "model": self.model_name, **self.output_labels}

    def own_matchers(self) -> list[str]:
        """Matchers for this pipeline's output series: `pipeline` and `output.labels` (not
        `model`: the series of a model that was replaced are the pipeline's too)."""
        matchers = [f'pipeline="{escape_label_value(self.name)}"']
        return matchers + [
            f'{k}="{escape_label_value(v)}"' for k, v in sorted(self.output_labels.items())
        ]

    def output_query(self, kind: str, label_filter: LabelFilter) -> str:
        """The written points of one output kind, each at one step only (see the module doc).
        One query per kind: `timestamp()` drops `__name__`, so over all four kinds at once
        Prometheus refuses the query (four series with one label set)."""
        matchers = self.own_matchers()
        if label_filter.matchers:
            matchers.append(label_filter.promql())
        return fresh(f"{self.prefix}_{kind}{{{', '.join(matchers)}}}", self.step)

    def anomaly_count_query(self, window: timedelta = timedelta(hours=24)) -> str:
        """Points that scored over 1 within `window` (before the evaluation time, that end
        included, the start not), over all series of the pipeline, each point counted once.

        `count_over_time((S > 1)[window:step])` alone counts a point at every step the
        lookback carries it to (see the module doc); the subquery counts fresh values only,
        at steps aligned like the writer's points. The window is 1 ms short: Prometheus 2's
        range is closed at its start and VictoriaMetrics' and Prometheus 3's open, and a
        point exactly `window` old must count on neither."""
        score = f"{self.prefix}_score{{{', '.join(self.own_matchers())}}}"
        span = format_duration(window - timedelta(milliseconds=1))
        return (
            f"sum(count_over_time(({fresh(f'{score} > 1', self.step, score)})"
            f"[{span}:{format_duration(self.step)}]))"
        )


def fresh(expression: str, step: timedelta, selector: str | None = None) -> str:
    """`expression` where the sample of `selector` (default: the expression itself, a plain
    selector) at the evaluation time t was written within (t - step, t], not carried forward
    by the lookback: `expression and timestamp(selector) > time() - step`. `and` matches
    without `__name__`, so the result keeps the expression's series and their names."""
    seconds = f"{step.total_seconds():.15g}"  # never 1e+06: that would be another number
    return f"{expression} and timestamp({selector or expression}) > time() - {seconds}"


@dataclass(frozen=True)
class SeriesView:
    """One input series and its outputs: `points` has the POINT_COLUMNS, NaN where unknown."""

    labels: dict[str, str]
    points: pd.DataFrame

    @property
    def max_score(self) -> float:
        scores = self.points["score"].dropna()
        return float(scores.max()) if len(scores) else math.nan

    @property
    def has_outputs(self) -> bool:
        return bool(self.points[["yhat", "score"]].notna().any().any())


class TsdbReads:
    def __init__(self, reader: MetricsReader, url: str) -> None:
        self.reader, self.url = reader, url

    def pipeline_series(
        self, facts: PipelineFacts, start: datetime, end: datetime, label_filter: LabelFilter
    ) -> list[SeriesView]:
        """Every input series of the pipeline that passes the filter, worst score first."""
        # The pipeline's own query, as the daemon reads it (its values at every step, which
        # for a plain selector includes what the lookback carries over a short gap).
        actual = self._read(facts.query, start, end, facts.step, facts.max_series)
        outputs = _concat(
            [
                self._read(
                    facts.output_query(kind, label_filter), start, end, facts.step, facts.max_series
                )
                for kind in OUTPUT_KINDS
            ]
        )
        return join_series(actual, outputs, facts, label_filter)

    def anomalies_24h(self, facts: PipelineFacts, now: datetime) -> int:
        # One point is enough; a range of one step makes sure the aligned range is not empty.
        frame = self._read(facts.anomaly_count_query(), now - facts.step, now, facts.step, None)
        if frame.data.empty:
            return 0
        last = frame.data.sort_values("ds")["y"].iloc[-1]
        return 0 if math.isnan(last) else round(float(last))

    def _read(
        self, query: str, start: datetime, end: datetime, step: timedelta, max_series: int | None
    ) -> SeriesFrame:
        try:
            return self.reader.query_range(query, start, end, step, max_series=max_series)
        except TSDBUnavailable as exc:
            raise TsdbUnavailable(self.url, self._reason(exc)) from None
        except TSDBQueryError as exc:
            raise TsdbQueryRefused(self.url, self._reason(exc)) from None
        except OpenAnomalyError as exc:  # e.g. an unreadable bearer_token_file
            raise TsdbUnavailable(self.url, str(exc)) from None

    def _reason(self, exc: Exception) -> str:
        # The reader names its endpoint first; the UI names the TSDB itself.
        return str(exc).removeprefix(f"{self.url}/api/v1/query_range ")


UI_TIMEOUT = timedelta(seconds=10)


def ui_reader_settings(tsdb: TSDBSettings) -> TSDBSettings:
    """The daemon's TSDB settings with a short budget: a page waits for a person, who would
    rather see "unreachable" soon than a spinner for a minute. Two attempts with little
    backoff; and a timeout of at most UI_TIMEOUT per attempt, because `tsdb.timeout` (30 s by
    default) is sized for the daemon's large reads, and two attempts of it would keep a page
    spinning for a minute on a TSDB that accepts connections but does not answer. The pages'
    reads are small (one pipeline, at most a week at its step) and the reader sends the same
    timeout to the server, which then gives up on the query too."""
    retry = RetrySettings(
        max_attempts=2,
        initial_backoff=timedelta(milliseconds=200),
        max_backoff=timedelta(seconds=1),
    )
    return tsdb.model_copy(update={"retry": retry, "timeout": min(tsdb.timeout, UI_TIMEOUT)})


# --- joining (pure) -------------------------------------------------------------------------


def as_written(labels: Mapping[str, str], facts: PipelineFacts) -> dict[str, str]:
    """An input series' labels as the writer writes them on its outputs (without __name__):
    what the label filter sees, on input and output series alike."""
    written = output_labels("x", labels, facts.own_labels())
    return {k: v for k, v in written if k != "__name__"}


def identity(labels: Mapping[str, str]) -> LabelKey:
    """What ties an output series to its input series: the written labels but `model`."""
    return tuple(sorted((k, v) for k, v in labels.items() if k not in _NOT_IDENTITY))


def join_series(
    actual: SeriesFrame, outputs: SeriesFrame, facts: PipelineFacts, label_filter: LabelFilter
) -> list[SeriesView]:
    """Input series and their four outputs, one SeriesView per series, worst first. Outputs
    whose input series is gone (or not in the range) still show, without actual values."""
    key_ids: dict[LabelKey, int] = {}
    shown: dict[int, dict[str, str]] = {}
    actual_keys: dict[str, int] = {}
    for uid, labels in actual.labels.items():
        written = as_written(labels, facts)
        if label_filter.matches(written):
            actual_keys[uid] = key_ids.setdefault(identity(written), len(key_ids))
            shown.setdefault(actual_keys[uid], dict(labels))
    kind_of = {f"{facts.prefix}_{kind}": kind for kind in OUTPUT_KINDS}
    ours = {"pipeline", "model", *facts.output_labels}
    output_ids: dict[str, tuple[int, str]] = {}
    for uid, labels in outputs.labels.items():
        kind = kind_of.get(labels.get("__name__", ""))
        if kind is None or not label_filter.matches(labels):
            continue
        key = identity(labels)
        key_id = key_ids.setdefault(key, len(key_ids))
        output_ids[uid] = (key_id, kind)
        shown.setdefault(key_id, {k: v for k, v in key if k not in ours})
    merged = _merge(actual.data, actual_keys, outputs.data, output_ids)
    keys = merged["key"].to_numpy(dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else keys
    ends = np.r_[starts[1:], len(keys)] if len(keys) else keys
    points = merged.drop(columns="key")
    views = [
        SeriesView(shown[int(keys[a])], points.iloc[a:b].reset_index(drop=True))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
    views += [  # inputs with no points in range still exist; say so rather than drop them
        SeriesView(shown[key_id], _empty_points())
        for key_id in sorted(set(shown) - set(keys.tolist()))
    ]
    return sorted(views, key=_worst_first)


def _merge(
    actual: pd.DataFrame,
    actual_keys: Mapping[str, int],
    outputs: pd.DataFrame,
    output_ids: Mapping[str, tuple[int, str]],
) -> pd.DataFrame:
    """One row per (series key, time): y from the input, the four kinds from the outputs."""
    mine = actual[actual["unique_id"].isin(list(actual_keys))]
    left = pd.DataFrame(
        {
            "key": mine["unique_id"].map(actual_keys).astype("int64"),
            "ds": _utc(mine["ds"]),
            "y": mine["y"].astype("float64"),
        }
    ).drop_duplicates(["key", "ds"], keep="last")
    out = outputs[outputs["unique_id"].isin(list(output_ids))]
    pairs = [output_ids[uid] for uid in out["unique_id"]]
    long = pd.DataFrame(
        {
            "key": pd.Series([p[0] for p in pairs], index=out.index, dtype="int64"),
            "kind": pd.Series([p[1] for p in pairs], index=out.index, dtype="object"),
            "ds": _utc(out["ds"]),
            "value": out["y"].astype("float64"),
        }
    )
    # Two output series of one kind for one input happen when the model changed in the range.
    long = long.drop_duplicates(["key", "ds", "kind"], keep="last")
    if long.empty:  # pivot cannot tell the dtypes of nothing
        right = pd.DataFrame({"key": long["key"], "ds": long["ds"]})
    else:
        right = long.pivot(index=["key", "ds"], columns="kind", values="value").reset_index()
        right.columns.name = None
    right = right.reindex(columns=["key", "ds", *OUTPUT_KINDS])
    merged = left.merge(right, on=["key", "ds"], how="outer")
    merged = merged.reindex(columns=["key", *POINT_COLUMNS])
    return merged.sort_values(["key", "ds"], kind="stable").reset_index(drop=True)


def _concat(frames: list[SeriesFrame]) -> SeriesFrame:
    """Frames of distinct series (here: one per output kind) as one."""
    # Empty frames left out: pandas warns about concatenating them (their dtypes are unknown).
    data = pd.concat([f.data for f in frames if len(f.data)] or [frames[0].data])
    labels = {uid: labels for f in frames for uid, labels in f.labels.items()}
    return SeriesFrame(data.sort_values(["unique_id", "ds"], kind="stable"), labels)


def _utc(times: pd.Series) -> pd.Series:
    # One dtype on both sides of the join, whatever resolution the reader produced.
    return pd.to_datetime(times, utc=True).astype("datetime64[ns, UTC]")


def _empty_points() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype="float64") for column in POINT_COLUMNS})
    return frame.assign(ds=pd.Series(dtype="datetime64[ns, UTC]"))


def _worst_first(view: SeriesView) -> tuple[float, str]:
    score = view.max_score
    return (-score if not math.isnan(score) else math.inf, str(sorted(view.labels.items())))


def view_anomalies(views: Iterable[SeriesView]) -> list[dict[str, Any]]:
    """Points scoring over 1, in the shape of the API's backtest anomalies (for one table)."""
    found: list[dict[str, Any]] = []
    for view in views:
        over = view.points[view.points["score"] > 1]
        for row in over.to_dict("records"):
            item = {str(k): v for k, v in row.items()}
            found.append(
                {**item, "labels": view.labels, "ds": pd.Timestamp(item["ds"]).isoformat()}
            )
    return found
