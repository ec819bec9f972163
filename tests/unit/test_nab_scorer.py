"""NAB scorer: the published reference figures for the shipped NAB subset, and the rules one by one."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from openanomaly.eval import nab

NAB_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "nab"
STANDARD = nab.Profile("standard", tp=1.0, fp=0.11, fn=1.0)

# The README's reference table: threshold, raw, normalized, windows detected.
REFERENCE = [
    ("null", "standard", 1.1, -53.0, 0.00, 0),
    ("null", "reward_low_FP_rate", 1.1, -53.0, 0.00, 0),
    ("null", "reward_low_FN_rate", 1.1, -106.0, 0.00, 0),
    ("windowedGaussian", "standard", 0.999999999999, -13.036853, 37.70, 25),
    ("windowedGaussian", "reward_low_FP_rate", 1.0, -18.315265, 32.72, 24),
    ("windowedGaussian", "reward_low_FN_rate", 0.999999999999, -41.036853, 40.86, 25),
]


@pytest.fixture(scope="module")
def corpus() -> nab.Corpus:
    return nab.load_corpus(NAB_ROOT)


@pytest.fixture(scope="module")
def results(corpus: nab.Corpus) -> dict[str, dict[str, np.ndarray]]:
    return {
        d: nab.read_results(corpus, NAB_ROOT / "results", d) for d in ("null", "windowedGaussian")
    }


def test_corpus_shape(corpus: nab.Corpus) -> None:
    assert len(corpus.files) == 31
    assert sum(f.rows for f in corpus.files.values()) == 139_187
    assert sum(f.rows - f.probation for f in corpus.files.values()) == 124_120
    assert sum(len(f.windows) for f in corpus.files.values()) == 53
    assert corpus.profiles["reward_low_FN_rate"] == nab.Profile(
        "reward_low_FN_rate", 1.0, 0.11, 2.0
    )
    cpc = corpus.files["realAdExchange/exchange-2_cpc_results.csv"]
    assert cpc.probation == 243
    assert cpc.windows == [(244, 406)]  # second scored row; 163 rows
    ec2 = corpus.files["realKnownCause/ec2_request_latency_system_failure.csv"]
    assert ec2.windows[-1] == (3956, ec2.rows - 1)  # runs to the last row
    assert corpus.files["realKnownCause/machine_temperature_system_failure.csv"].probation == 750


@pytest.mark.parametrize("case", REFERENCE, ids=lambda c: f"{c[0]}-{c[1]}")
def test_reference_table(
    corpus: nab.Corpus,
    results: dict[str, dict[str, np.ndarray]],
    case: tuple[str, str, float, float, float, int],
) -> None:
    detector, profile, threshold, raw, normalized, hits = case
    got = nab.score_corpus(corpus, results[detector], profile)
    assert got.threshold == threshold
    assert got.raw == pytest.approx(raw, abs=1e-6)
    assert round(got.normalized, 2) == normalized
    assert (got.windows_detected, got.windows) == (hits, 53)
    # the sweep's figure for the chosen threshold is the one scoring at it gives
    thresholds, raws = nab.threshold_sweep(corpus, results[detector], profile)
    assert raws.max() == pytest.approx(got.raw, abs=1e-9)
    assert thresholds[0] == 1.1
    assert np.all(np.diff(thresholds) < 0)


def test_reference_per_file(corpus: nab.Corpus, results: dict[str, dict[str, np.ndarray]]) -> None:
    ref = pd.read_csv(NAB_ROOT / "reference_scores.csv")
    ref = ref[ref["file"] != "Totals"]
    assert len(ref) == 2 * 3 * 31
    for (detector, profile), rows in ref.groupby(["detector", "profile"]):
        threshold = float(rows["threshold"].iloc[0])
        got = nab.score_corpus(corpus, results[str(detector)], str(profile), threshold=threshold)
        for row in rows.itertuples():
            f = got.files[str(row.file)]
            assert f.raw == pytest.approx(row.raw, abs=6e-7), row.file
            assert (f.tp, f.fp, f.fn, f.tn) == (row.tp, row.fp, row.fn, row.tn), row.file
            assert (f.windows, f.windows_detected) == (row.windows, row.windows_detected), row.file


def test_reference_categories(
    corpus: nab.Corpus, results: dict[str, dict[str, np.ndarray]]
) -> None:
    got = nab.score_corpus(corpus, results["windowedGaussian"], "standard")
    expected = {
        "artificialWithAnomaly": 7.98,
        "realAdExchange": 56.90,
        "realKnownCause": 13.36,
        "realTraffic": 64.28,
    }
    for category, normalized in expected.items():
        assert round(got.category(category)[1], 2) == normalized, category
    raw, normalized = got.category("artificialNoAnomaly")
    assert raw == 0.0
    assert math.isnan(normalized)
    assert sum(got.category(c)[0] for c in corpus.categories()) == pytest.approx(got.raw)


def test_sweep_is_fast(corpus: nab.Corpus, results: dict[str, dict[str, np.ndarray]]) -> None:
    scores = results["windowedGaussian"]
    nab.optimise_threshold(corpus, scores, "standard")  # warm the per-file weight cache
    started = time.perf_counter()
    nab.optimise_threshold(corpus, scores, "standard")
    assert time.perf_counter() - started < 0.5


def test_sweep_matches_scoring_at_every_threshold(corpus: nab.Corpus) -> None:
    """The exact sweep against brute force: score the whole corpus at each candidate threshold."""
    rng = np.random.default_rng(7)
    scores = {
        k: rng.choice(
            [0.0, 0.2, 0.5, 0.9, 0.97, 1.0], size=f.rows, p=[0.9, 0.04, 0.03, 0.015, 0.01, 0.005]
        )
        for k, f in corpus.files.items()
    }
    for profile in corpus.profiles:
        thresholds, raws = nab.threshold_sweep(corpus, scores, profile)
        assert thresholds.tolist() == [1.1, 1.0, 0.97, 0.9, 0.5, 0.2, 0.0]
        for threshold, raw in zip(thresholds, raws, strict=True):
            fixed = nab.score_corpus(corpus, scores, profile, threshold=float(threshold))
            assert fixed.raw == pytest.approx(raw, rel=1e-12, abs=1e-9)
        best = nab.score_corpus(corpus, scores, profile)
        assert best.raw == pytest.approx(raws.max(), abs=1e-9)
        for threshold in (0.0, 0.3, 0.9, 0.95, 1.0, 1.1):
            assert (
                best.raw
                >= nab.score_corpus(corpus, scores, profile, threshold=threshold).raw - 1e-9
            )


# --- the rules, on small synthetic files -------------------------------------------------------


def make_corpus(rows: int, windows: list[tuple[int, int]], probation: int = 10) -> nab.Corpus:
    f = nab.NabFile(
        key="synthetic/a.csv",
        timestamps=pd.Series(pd.date_range("2020-01-01", periods=rows, freq="5min")),
        values=np.zeros(rows),
        windows=windows,
        probation=probation,
    )
    return nab.Corpus(root=Path("."), files={f.key: f}, profiles={STANDARD.name: STANDARD})


def score(corpus: nab.Corpus, hits: list[int], threshold: float | None = 0.5) -> nab.FileScore:
    (f,) = corpus.files.values()
    s = np.zeros(f.rows)
    s[hits] = 1.0
    return nab.score_corpus(corpus, {f.key: s}, "standard", threshold=threshold).files[f.key]


def sigmoid(y: float) -> float:
    return -1.0 if y >= 3 else 2 / (1 + math.exp(5 * y)) - 1


def test_first_row_of_a_window_earns_tp_weight() -> None:
    c = make_corpus(100, [(50, 59)])
    got = score(c, [50])
    assert got.raw == pytest.approx(1.0, abs=1e-12)
    assert (got.tp, got.fp, got.fn, got.tn, got.windows_detected) == (1, 0, 9, 80, 1)
    assert score(c, [59]).raw == pytest.approx(sigmoid(-1 / 10) / sigmoid(-1), abs=1e-12)


def test_only_the_earliest_detection_of_a_window_counts() -> None:
    c = make_corpus(100, [(50, 59)])
    got = score(c, [53, 55, 58])
    assert got.raw == pytest.approx(sigmoid(-7 / 10) / sigmoid(-1), abs=1e-12)
    assert (got.tp, got.windows_detected) == (3, 1)


def test_missed_window_costs_fn_weight() -> None:
    got = score(make_corpus(100, [(50, 59), (80, 89)]), [80])
    assert got.raw == pytest.approx(1.0 - 1.0, abs=1e-12)
    assert (got.windows, got.windows_detected) == (2, 1)


def test_detection_in_probation_is_ignored() -> None:
    c = make_corpus(100, [(50, 59)], probation=15)
    got = score(c, [0, 14])
    assert got.raw == -1.0
    assert (got.tp, got.fp, got.fn, got.tn) == (0, 0, 10, 75)
    assert score(c, [15]).raw == pytest.approx(-1.0 - 0.11)


def test_false_positive_before_the_first_window_or_without_windows_costs_fp_weight() -> None:
    assert score(make_corpus(100, [(50, 59)]), [20, 49]).raw == pytest.approx(-1.0 - 2 * 0.11)
    assert score(make_corpus(100, []), [20, 99]).raw == pytest.approx(-2 * 0.11)


def test_false_positive_after_a_window_is_weighted_by_distance() -> None:
    c = make_corpus(200, [(50, 59)])
    assert score(c, [60]).raw == pytest.approx(-1.0 + 0.11 * sigmoid(1 / 9), abs=1e-12)
    assert score(c, [68]).raw == pytest.approx(-1.0 + 0.11 * sigmoid(1.0), abs=1e-12)
    assert score(c, [59 + 27]).raw == pytest.approx(-1.0 - 0.11, abs=1e-12)  # 3 widths on
    assert score(c, [50, 60]).raw == pytest.approx(1.0 + 0.11 * sigmoid(1 / 9), abs=1e-12)


def test_threshold_ties_go_to_the_higher_threshold() -> None:
    c = make_corpus(100, [(50, 59)])
    s = np.zeros(100)
    s[50], s[55] = 0.9, 0.6  # 0.6 adds a later detection of the same window: the same score
    thresholds, raws = nab.threshold_sweep(c, {"synthetic/a.csv": s}, STANDARD)
    assert thresholds.tolist() == [1.1, 0.9, 0.6, 0.0]
    assert raws[1] == raws[2]
    assert nab.optimise_threshold(c, {"synthetic/a.csv": s}, "standard") == 0.9
    assert nab.optimise_threshold(c, {"synthetic/a.csv": np.zeros(100)}, "standard") == 1.1


def test_optimised_threshold_beats_any_fixed_one() -> None:
    c = make_corpus(300, [(100, 129), (200, 229)], probation=45)
    s = np.random.default_rng(3).uniform(size=300)
    optimised = nab.score_corpus(c, {"synthetic/a.csv": s}, STANDARD)
    assert optimised.threshold in set(s.tolist()) | {1.1}
    for threshold in np.linspace(0.0, 1.0, 101):
        fixed = nab.score_corpus(c, {"synthetic/a.csv": s}, STANDARD, threshold=float(threshold))
        assert optimised.raw >= fixed.raw - 1e-12


def test_normalisation() -> None:
    c = make_corpus(100, [(50, 59), (80, 89)])
    s = np.zeros(100)
    s[[50, 80]] = 1.0
    perfect = nab.score_corpus(c, {"synthetic/a.csv": s}, STANDARD)
    assert (perfect.raw, perfect.normalized) == pytest.approx((2.0, 100.0))
    null = nab.score_corpus(c, {"synthetic/a.csv": np.zeros(100)}, STANDARD, threshold=0.5)
    assert (null.raw, null.normalized) == (-2.0, 0.0)


def test_bad_scores_are_refused_naming_the_file() -> None:
    c = make_corpus(100, [(50, 59)])
    s = np.zeros(100)
    s[70] = np.nan
    with pytest.raises(ValueError, match=r"synthetic/a\.csv: anomaly score is NaN at row 70"):
        nab.score_corpus(c, {"synthetic/a.csv": s}, "standard")
    with pytest.raises(ValueError, match=r"synthetic/a\.csv: 99 anomaly scores for 100"):
        nab.score_corpus(c, {"synthetic/a.csv": np.zeros(99)}, "standard")
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        nab.optimise_threshold(c, {"synthetic/a.csv": np.full(100, 1.5)}, "standard")
    with pytest.raises(ValueError, match="missing"):
        nab.score_corpus(c, {}, "standard")
    with pytest.raises(ValueError, match="unknown NAB profile"):
        nab.score_corpus(c, {"synthetic/a.csv": np.zeros(100)}, "nope")


def test_window_bounds_follow_rows_when_timestamps_repeat(tmp_path: Path) -> None:
    stamps = [
        "2020-01-01 00:00:00",
        "2020-01-01 00:05:00",
        "2020-01-01 00:05:00",
        "2020-01-01 00:10:00",
        "2020-01-01 00:10:00",
        "2020-01-01 00:15:00",
    ]
    (tmp_path / "data" / "c").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    (tmp_path / "config").mkdir()
    pd.DataFrame({"timestamp": stamps, "value": range(6)}).to_csv(
        tmp_path / "data" / "c" / "x.csv", index=False
    )
    (tmp_path / "labels" / "combined_windows.json").write_text(
        '{"c/x.csv": [["2020-01-01 00:05:00.000000", "2020-01-01 00:10:00.000000"]]}'
    )
    (tmp_path / "config" / "profiles.json").write_text(
        (NAB_ROOT / "config" / "profiles.json").read_text()
    )
    c = nab.load_corpus(tmp_path)
    assert c.files["c/x.csv"].windows == [(1, 3)]
    assert c.files["c/x.csv"].probation == 0


def test_results_round_trip(tmp_path: Path) -> None:
    sub = nab.load_corpus(NAB_ROOT, categories=["realAdExchange", "realTraffic"])
    assert sub.categories() == ["realAdExchange", "realTraffic"]
    rng = np.random.default_rng(1)
    scores = {k: rng.uniform(size=f.rows) for k, f in sub.files.items()}
    scores["realTraffic/speed_7578.csv"][:5] = [0.0, 1.0, 1 / 3, 1e-17, 0.1]
    nab.write_results(sub, tmp_path, "mine", scores)
    path = tmp_path / "mine" / "realTraffic" / "mine_speed_7578.csv"
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["timestamp", "value", "anomaly_score", "label"]
    data = pd.read_csv(NAB_ROOT / "data" / "realTraffic" / "speed_7578.csv")
    assert frame["timestamp"].tolist() == data["timestamp"].tolist()
    assert frame["label"].sum() == sum(
        e - s + 1 for s, e in sub.files["realTraffic/speed_7578.csv"].windows
    )
    back = nab.read_results(sub, tmp_path, "mine")
    assert back.keys() == scores.keys()
    for key, s in scores.items():
        np.testing.assert_array_equal(back[key], s)
    assert (
        nab.score_corpus(sub, back, "standard").raw == nab.score_corpus(sub, scores, "standard").raw
    )

    frame.iloc[:-1].to_csv(path, index=False)
    with pytest.raises(
        ValueError, match=r"mine_speed_7578\.csv: 1126 rows, but the data file has 1127"
    ):
        nab.read_results(sub, tmp_path, "mine")
    frame.loc[3, "anomaly_score"] = np.nan
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"mine_speed_7578\.csv: anomaly score is NaN at row 3"):
        nab.read_results(sub, tmp_path, "mine")
    with pytest.raises(ValueError, match="unknown NAB categories"):
        nab.load_corpus(NAB_ROOT, categories=["realTweets"])
