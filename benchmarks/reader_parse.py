"""Reader parse path: a query_range body -> per-series numpy arrays (and -> long frame),
against the floor `json.loads` of the same body."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, pin_to_one_core

from openanomaly.adapters.metrics_reader.parse import parse_range_body, to_frame


def body(series: int, points: int) -> bytes:
    """What Prometheus sends: values as strings, timestamps as float seconds."""
    rng = np.random.default_rng(0)
    start = 1_763_000_000
    stamps = [start + 60 * k for k in range(points)]
    result = []
    for i in range(series):
        texts = [repr(float(x)) for x in rng.normal(50, 10, points)]
        texts[points // 2] = "NaN"
        result.append(
            {
                "metric": {"__name__": "node_cpu", "instance": f"host-{i}:9100", "job": "node"},
                "values": [[t, v] for t, v in zip(stamps, texts, strict=True)],
            }
        )
    return orjson.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=1_000)
    parser.add_argument("--points", type=int, default=1_440)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pin_to_one_core()
    payload = body(args.series, args.points)
    samples = args.series * args.points

    t_floor_gc, _ = best_of(lambda: json.loads(payload), args.repeat)
    gc.disable()  # the fair floor: our parser pauses the cyclic GC, so time json.loads so too
    t_floor, _ = best_of(lambda: json.loads(payload), args.repeat)
    gc.enable()
    t_orjson, _ = best_of(lambda: orjson.loads(payload), args.repeat)
    t_arrays, parsed = best_of(lambda: parse_range_body(payload), args.repeat)
    t_frame, frame = best_of(lambda: to_frame(parse_range_body(payload)), args.repeat)
    assert len(frame.data) == samples
    assert sum(np.isnan(v).sum() for v in parsed.values.values()) == args.series

    print(
        f"{args.series} series x {args.points} points = {samples:,} samples, {len(payload) / 1e6:.1f} MB"
    )
    print(
        f"json.loads, GC on:         {t_floor_gc * 1000:8.1f} ms {samples / t_floor_gc:12,.0f} samples/s"
    )
    print(
        f"floor json.loads, GC off:  {t_floor * 1000:8.1f} ms {samples / t_floor:12,.0f} samples/s"
    )
    print(f"orjson.loads alone:        {t_orjson * 1000:8.1f} ms  ratio {t_orjson / t_floor:.2f}")
    print(
        f"ours body -> arrays:       {t_arrays * 1000:8.1f} ms {samples / t_arrays:12,.0f} samples/s  ratio {t_arrays / t_floor:.2f}"
    )
    print(
        f"ours body -> long frame:   {t_frame * 1000:8.1f} ms {samples / t_frame:12,.0f} samples/s  ratio {t_frame / t_floor:.2f}"
    )


if __name__ == "__main__":
    main()
