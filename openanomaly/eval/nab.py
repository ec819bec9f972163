"""Numenta Anomaly Benchmark (NAB v1.1) scoring, implemented from the published method.

Lavin & Ahmad, "Evaluating Real-time Anomaly Detection Algorithms - the Numenta Anomaly
Benchmark", arXiv:1510.03336 (2015); Ahmad et al., Neurocomputing 262 (2017).

Rows are identified by their position in file order (some NAB files repeat timestamps). A label
window maps to rows like NAB's sweeper: it starts at the first row stamped with its start and
ends at the first row from there on stamped with its end; both ends are included. Per file:

- the first min(floor(0.15 * rows), 750) rows are a probation period and are never scored;
- a detection is a row whose anomaly score is >= the threshold;
- with S(y) = 2 / (1 + exp(5y)) - 1 (and -1 for y >= 3): inside a window of w rows ending at row
  r, row i is worth tp * S(-(r - i + 1) / w) / S(-1) (tp on the first row); only the best, i.e.
  earliest, detection of a window counts, and a window with none costs -fn;
- every detection outside windows adds fp * S((i - r) / (w - 1)) for the closest preceding window
  (w rows ending at row r), or -fp before a file's first window;
- normalized = 100 * (raw - null) / (perfect - null) with null = -fn * W, perfect = tp * W.

The threshold maximises the raw score of all files together (ties go to the higher threshold).
`threshold_sweep` computes the exact raw score of every candidate threshold (1.1, i.e. none,
then each distinct anomaly score) in one pass: all scored rows sorted by score, cumulative
false-positive costs, and a running maximum of the true-positive weight per window.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PROBATION_FRACTION = 0.15
PROBATION_CAP = 750
NO_DETECTION = 1.1
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def scaled_sigmoid(y: FloatArray) -> FloatArray:
    """NAB's scaled sigmoid: 2 / (1 + e^(5y)) - 1, and -1 for y >= 3."""
    y = np.asarray(y, dtype=np.float64)
    s = 2.0 / (1.0 + np.exp(5.0 * np.minimum(y, 3.0))) - 1.0
    return np.where(y >= 3.0, -1.0, s)


MAX_TP = float(scaled_sigmoid(np.array([-1.0]))[0])


def probation_rows(rows: int) -> int:
    return min(math.floor(PROBATION_FRACTION * rows), PROBATION_CAP)


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float


@dataclass
class NabFile:
    key: str  # "category/file.csv"
    timestamps: pd.Series[Any]  # file order, naive datetimes
    values: FloatArray
    windows: list[tuple[int, int]]  # inclusive row ranges, in order, not overlapping
    probation: int  # rows not scored
    _unit: tuple[FloatArray, IntArray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def rows(self) -> int:
        return len(self.timestamps)

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def scored_windows(self) -> list[int]:
        """Indices of the windows with at least one scored row (NAB ignores the others)."""
        return [k for k, (_, end) in enumerate(self.windows) if end >= self.probation]

    def labels(self) -> npt.NDArray[np.int8]:
        out = np.zeros(self.rows, dtype=np.int8)
        for start, end in self.windows:
            out[start : end + 1] = 1
        return out

    def unit_weights(self) -> tuple[FloatArray, IntArray]:
        """For the scored rows: S(position) before profile weights, and the window (-1: none)."""
        if self._unit is None:
            n = self.rows
            idx = np.arange(n, dtype=np.float64)
            win = np.full(n, -1, dtype=np.int64)
            unit = np.full(n, -1.0)  # before the first window: S(3) = -1
            for k, (start, end) in enumerate(self.windows):
                width = end - start + 1
                win[start : end + 1] = k
                unit[start : end + 1] = scaled_sigmoid(-(end - idx[start : end + 1] + 1) / width)
                following = self.windows[k + 1][0] if k + 1 < len(self.windows) else n
                if width > 1:  # a one-row window leaves -1 after it
                    after = idx[end + 1 : following]
                    unit[end + 1 : following] = scaled_sigmoid((after - end) / (width - 1))
            p = self.probation
            self._unit = (unit[p:], win[p:])
        return self._unit


def _weights(unit: FloatArray, win: IntArray, profile: Profile) -> FloatArray:
    return np.where(win >= 0, unit * profile.tp / MAX_TP, unit * profile.fp)


@dataclass
class Corpus:
    root: Path
    files: dict[str, NabFile]
    profiles: dict[str, Profile]

    def profile(self, profile: str | Profile) -> Profile:
        if isinstance(profile, Profile):
            return profile
        if profile not in self.profiles:
            raise ValueError(f"unknown NAB profile {profile!r}; known: {sorted(self.profiles)}")
        return self.profiles[profile]

    def categories(self) -> list[str]:
        return sorted({f.category for f in self.files.values()})


def load_profiles(path: Path) -> dict[str, Profile]:
    costs = {k: v["CostMatrix"] for k, v in json.loads(Path(path).read_text()).items()}
    return {k: Profile(k, c["tpWeight"], c["fpWeight"], c["fnWeight"]) for k, c in costs.items()}


def _window_rows(key: str, stamps: npt.NDArray[Any], start: str, end: str) -> tuple[int, int]:
    first = np.flatnonzero(stamps == pd.Timestamp(start).to_datetime64())
    if first.size == 0:
        raise ValueError(f"{key}: window start {start} is not a timestamp of the file")
    i = int(first[0])
    last = np.flatnonzero(stamps[i:] == pd.Timestamp(end).to_datetime64())
    if last.size == 0:
        raise ValueError(f"{key}: window end {end} is not a timestamp at or after its start")
    return i, i + int(last[0])


def load_corpus(root: Path, categories: Sequence[str] | None = None) -> Corpus:
    """The data files, windows and profiles of a NAB tree (data/, labels/, config/)."""
    root = Path(root)
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    wanted = None if categories is None else set(categories)
    if wanted is not None and (unknown := wanted - {k.split("/", 1)[0] for k in labels}):
        raise ValueError(f"unknown NAB categories: {sorted(unknown)}")
    files: dict[str, NabFile] = {}
    for key in sorted(labels):
        if wanted is not None and key.split("/", 1)[0] not in wanted:
            continue
        frame = pd.read_csv(root / "data" / key)
        stamps = pd.to_datetime(frame["timestamp"], format=TIME_FORMAT)
        as_np = stamps.to_numpy(dtype="datetime64[ns]")
        windows = [_window_rows(key, as_np, s, e) for s, e in labels[key]]
        for (_, prev_end), (start, _) in itertools.pairwise(windows):
            if start <= prev_end:
                raise ValueError(f"{key}: windows overlap or are out of order: {labels[key]}")
        values = frame["value"].to_numpy(dtype=np.float64)
        files[key] = NabFile(key, stamps, values, windows, probation_rows(len(frame)))
    return Corpus(root, files, load_profiles(root / "config" / "profiles.json"))


def _check_scores(where: str, scores: Any, rows: int) -> FloatArray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != rows:
        raise ValueError(f"{where}: {arr.size} anomaly scores for {rows} data rows")
    if (nan := np.flatnonzero(np.isnan(arr))).size:
        raise ValueError(f"{where}: anomaly score is NaN at row {int(nan[0])}")
    if (bad := np.flatnonzero((arr < 0.0) | (arr > 1.0))).size:
        i = int(bad[0])
        raise ValueError(f"{where}: anomaly score {arr[i]!r} at row {i} is outside [0, 1]")
    return arr


def _checked(corpus: Corpus, scores: Mapping[str, Any]) -> dict[str, FloatArray]:
    missing = sorted(set(corpus.files) - set(scores))
    unknown = sorted(set(scores) - set(corpus.files))
    if missing or unknown:
        raise ValueError(f"scores do not match the corpus: missing {missing}, unknown {unknown}")
    return {k: _check_scores(k, scores[k], f.rows) for k, f in corpus.files.items()}


def results_path(results_dir: Path, detector: str, key: str) -> Path:
    category, name = key.split("/", 1)
    return Path(results_dir) / detector / category / f"{detector}_{name}"


def write_results(
    corpus: Corpus, results_dir: Path, detector: str, scores: Mapping[str, Any]
) -> None:
    """One NAB results file (timestamp,value,anomaly_score,label) per entry of `scores`."""
    if unknown := sorted(set(scores) - set(corpus.files)):
        raise ValueError(f"not files of the corpus: {unknown}")
    for key, raw in scores.items():
        f = corpus.files[key]
        frame = pd.DataFrame(
            {
                "timestamp": f.timestamps.dt.strftime(TIME_FORMAT).to_numpy(),
                "value": f.values,
                "anomaly_score": _check_scores(key, raw, f.rows),
                "label": f.labels(),
            }
        )
        path = results_path(results_dir, detector, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)


def read_results(corpus: Corpus, results_dir: Path, detector: str) -> dict[str, FloatArray]:
    """The anomaly_score column of every corpus file's results file, checked against the data."""
    out: dict[str, FloatArray] = {}
    for key, f in corpus.files.items():
        path = results_path(results_dir, detector, key)
        if not path.is_file():
            raise FileNotFoundError(f"{key}: no results file {path}")
        frame = pd.read_csv(path, float_precision="round_trip")
        if "anomaly_score" not in frame.columns:
            raise ValueError(f"{path}: no anomaly_score column")
        if len(frame) != f.rows:
            raise ValueError(f"{path}: {len(frame)} rows, but the data file has {f.rows}")
        if "timestamp" in frame.columns:
            stamps = pd.to_datetime(frame["timestamp"], format=TIME_FORMAT).to_numpy()
            if (diff := np.flatnonzero(stamps != f.timestamps.to_numpy())).size:
                raise ValueError(f"{path}: timestamp differs from the data at row {diff[0]}")
        out[key] = _check_scores(str(path), frame["anomaly_score"].to_numpy(), f.rows)
    return out


def normalize(raw: float, windows: int, profile: Profile) -> float:
    """100 * (raw - null) / (perfect - null); NaN without windows (nothing to normalise by)."""
    if windows == 0:
        return math.nan
    null = -profile.fn * windows
    return 100.0 * (raw - null) / (profile.tp * windows - null)


@dataclass
class FileScore:
    key: str
    raw: float
    tp: int  # scored rows, as in NAB's score files
    fp: int
    fn: int
    tn: int
    windows: int
    windows_detected: int


@dataclass
class CorpusScore:
    profile: str
    threshold: float
    raw: float
    normalized: float
    windows: int
    windows_detected: int
    files: dict[str, FileScore]
    weights: Profile

    def category(self, name: str) -> tuple[float, float]:
        """(raw, normalized with that category's own windows); normalized is NaN without any."""
        chosen = [s for k, s in self.files.items() if k.split("/", 1)[0] == name]
        if not chosen:
            raise ValueError(f"no scored file in category {name!r}")
        raw = sum(s.raw for s in chosen)
        return raw, normalize(raw, sum(s.windows for s in chosen), self.weights)


def score_file(f: NabFile, scores: FloatArray, profile: Profile, threshold: float) -> FileScore:
    unit, win = f.unit_weights()
    weights = _weights(unit, win, profile)
    detected = scores[f.probation :] >= threshold
    inside = win >= 0
    raw = float(weights[detected & ~inside].sum())
    hits = 0
    for k in f.scored_windows:
        start, end = (max(b - f.probation, 0) for b in f.windows[k])
        found = weights[start : end + 1][detected[start : end + 1]]
        if found.size:
            raw += float(found.max())
            hits += 1
        else:
            raw -= profile.fn
    tp, fp = int((detected & inside).sum()), int((detected & ~inside).sum())
    fn, tn = int(inside.sum()) - tp, int((~inside).sum()) - fp
    return FileScore(f.key, raw, tp, fp, fn, tn, len(f.scored_windows), hits)


def _sweep(
    corpus: Corpus, scores: Mapping[str, FloatArray], profile: Profile
) -> tuple[FloatArray, FloatArray]:
    base = -profile.fn * sum(len(f.scored_windows) for f in corpus.files.values())
    if not corpus.files:
        return np.array([NO_DETECTION]), np.array([base])
    parts_s, parts_w, parts_g, offset = [], [], [], 0
    for key, f in corpus.files.items():
        unit, win = f.unit_weights()
        parts_s.append(scores[key][f.probation :])
        parts_w.append(_weights(unit, win, profile))
        parts_g.append(np.where(win >= 0, win + offset, -1))
        offset += len(f.windows)
    order = np.argsort(-np.concatenate(parts_s), kind="stable")
    s, w, g = (np.concatenate(parts)[order] for parts in (parts_s, parts_w, parts_g))
    # Outside windows every detection adds its cost; inside, a window's part is the running
    # maximum of its detections' weights (from -fn), so each detection adds the increase.
    delta = np.where(g < 0, w, 0.0)
    pos = np.flatnonzero(g >= 0)
    if pos.size:
        pos = pos[np.argsort(g[pos], kind="stable")]
        starts = np.flatnonzero(np.diff(g[pos])) + 1
        best = np.concatenate([np.maximum.accumulate(seg) for seg in np.split(w[pos], starts)])
        before = np.empty_like(best)
        before[1:] = best[:-1]
        before[np.r_[0, starts]] = -profile.fn
        delta[pos] = best - before
    total = base + np.cumsum(delta)
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1] if s.size else []
    return np.r_[NO_DETECTION, s[last]], np.r_[base, total[last]]


def threshold_sweep(
    corpus: Corpus, scores: Mapping[str, Any], profile: str | Profile
) -> tuple[FloatArray, FloatArray]:
    """Every candidate threshold, descending (1.1 first), and the corpus raw score it gives."""
    return _sweep(corpus, _checked(corpus, scores), corpus.profile(profile))


def optimise_threshold(corpus: Corpus, scores: Mapping[str, Any], profile: str | Profile) -> float:
    """The threshold with the highest corpus raw score; on equal scores the higher threshold."""
    thresholds, raw = threshold_sweep(corpus, scores, profile)
    return float(thresholds[int(np.argmax(raw))])


def score_corpus(
    corpus: Corpus,
    scores: Mapping[str, Any],
    profile: str | Profile,
    threshold: float | None = None,
) -> CorpusScore:
    """Score every file at `threshold` (None: the optimised one) and total them."""
    weights = corpus.profile(profile)
    checked = _checked(corpus, scores)
    if threshold is None:
        thresholds, raw_by_threshold = _sweep(corpus, checked, weights)
        threshold = thresholds[int(np.argmax(raw_by_threshold))]
    threshold = float(threshold)
    files = {k: score_file(f, checked[k], weights, threshold) for k, f in corpus.files.items()}
    raw, windows = sum(s.raw for s in files.values()), sum(s.windows for s in files.values())
    detected = sum(s.windows_detected for s in files.values())
    normalized = normalize(raw, windows, weights)
    return CorpusScore(weights.name, threshold, raw, normalized, windows, detected, files, weights)
