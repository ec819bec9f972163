"""Reproduce the table in benchmarks/nab/README.md: every variant through `run.py` (csv path;
the defaults through both paths), one Markdown row each. About an hour on 2 cores.

    uv run --no-sync python benchmarks/nab/table.py [--only LABEL ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (label, what it is, run.py arguments). The first is the shipped default (no settings at all).
VARIANTS: list[tuple[str, str, list[str]]] = [
    ("default", "MSTL 1d, level 99, scale 2, outside_range 0.1, holdoff 8h", []),
    ("range-0.05", "default, outside_range 0.05", ["--set", "scoring.outside_range=0.05"]),
    ("range-0.2", "default, outside_range 0.2", ["--set", "scoring.outside_range=0.2"]),
    ("range-0.02", "default, outside_range 0.02", ["--set", "scoring.outside_range=0.02"]),
    ("range-off", "default, outside_range 0 (off)", ["--set", "scoring.outside_range=0"]),
    ("scale-1.75", "default, scale 1.75", ["--set", "model.scale=1.75"]),
    ("scale-1", "default, scale 1 (the level-99 band as is)", ["--set", "model.scale=1"]),
    ("level-99.9", "default, level 99.9, scale 1", ["--set", "model.level=99.9", "--set", "model.scale=1"]),
    ("holdoff-4h", "default, holdoff 4h", ["--set", "scoring.holdoff=4h"]),
    ("holdoff-12h", "default, holdoff 12h", ["--set", "scoring.holdoff=12h"]),
    ("holdoff-off", "default, holdoff 0s (off)", ["--set", "scoring.holdoff=0s"]),
    ("window-28d", "default, train.window 28d", ["--set", "train.window=28d"]),
    ("autoets", "AutoETS (no season), otherwise default", ["--set", "model.name=AutoETS", "--set", "model.params={}"]),
    ("seasonal-naive", "SeasonalNaive 1d + the empirical band", ["--set", "model.name=SeasonalNaive"]),
    (
        "mlforecast-lgbm",
        "MLForecast LightGBM (lags, season 1d), conformal band",
        ["--set", "model.engine=mlforecast", "--set", "model.name=LGBMRegressor",
         "--set", "model.params.verbosity=-1"],
    ),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="labels to run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="oa-nab-table-") as tmp:
        for label, what, extra in VARIANTS:
            if args.only and label not in args.only:
                continue
            out = Path(tmp) / label
            path = "both" if label == "default" else "csv"
            command = [sys.executable, str(HERE / "run.py"), "--path", path, "--out", str(out)]
            subprocess.run([*command, *extra], check=True)
            summary = json.loads((out / "summary.json").read_text())
            for name, figures in summary["paths"].items():
                rows.append(row(f"{label} ({name})", what, figures))
            if "max_abs_score_difference" in summary:
                print(f"csv vs tsdb: {summary['max_abs_score_difference']:.3g}", file=sys.stderr)
    print(
        "| variant | what | standard opt | standard >1 | low FP opt | low FN opt | windows | FP rows >1 | time |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def row(label: str, what: str, figures: dict) -> str:  # type: ignore[type-arg]
    p = figures["profiles"]
    std = p["standard"]
    return (
        f"| {label} | {what} | {std['optimised']:.2f} | {std['fixed']:.2f} | "
        f"{p['reward_low_FP_rate']['optimised']:.2f} | {p['reward_low_FN_rate']['optimised']:.2f} | "
        f"{std['detected']}/53 | {std['fixed_fp_rows']} | {figures['wall_seconds']:.0f} s |"
    )


if __name__ == "__main__":
    main()
