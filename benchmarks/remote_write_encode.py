"""Remote-write encode path: output labels -> protobuf -> snappy, against the protobuf floor."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import snappy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, pin_to_one_core

from openanomaly.adapters.metrics_writer.encoding import (
    EncodedSeries,
    compress,
    encode_labels,
    encode_write_request,
)
from openanomaly.adapters.metrics_writer.prompb import messages
from openanomaly.domain.labels import output_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--series", type=int, default=40_000, help="output series (10,000 inputs x 4)"
    )
    parser.add_argument("--points", type=int, default=60, help="samples per series")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pin_to_one_core()

    rng = np.random.default_rng(0)
    labels = [
        output_labels(
            f"anomaly_{('score', 'yhat', 'yhat_lower', 'yhat_upper')[i % 4]}",
            {
                "__name__": "node_cpu",
                "instance": f"host-{i // 4}:9100",
                "job": "node",
                "mode": "user",
            },
            {"pipeline": "node-cpu", "model": "AutoETS"},
        )
        for i in range(args.series)
    ]
    ts = 1_763_000_000_000 + np.arange(args.points, dtype=np.int64) * 60_000
    values = [rng.normal(size=args.points) for _ in range(args.series)]
    samples = args.series * args.points

    def ours_cold() -> bytes:  # every label block encoded from scratch
        return compress(
            encode_write_request(
                [
                    EncodedSeries(encode_labels(lab), ts, v)
                    for lab, v in zip(labels, values, strict=True)
                ]
            )
        )

    blocks = [encode_labels(lab) for lab in labels]

    def ours_warm() -> bytes:  # label blocks cached, as the writer does between cycles
        return compress(
            encode_write_request(
                [EncodedSeries(b, ts, v) for b, v in zip(blocks, values, strict=True)]
            )
        )

    request = messages()["WriteRequest"]()
    for lab, v in zip(labels, values, strict=True):
        item = request.timeseries.add()
        for name, value in lab:
            item.labels.add(name=name, value=value)
        for t, x in zip(ts.tolist(), v.tolist(), strict=True):
            item.samples.add(value=x, timestamp=t)

    def floor() -> bytes:
        return bytes(snappy.compress(request.SerializeToString()))

    t_floor, body_floor = best_of(floor, args.repeat)
    t_cold, body_cold = best_of(ours_cold, args.repeat)
    t_warm, _ = best_of(ours_warm, args.repeat)
    assert snappy.decompress(body_cold) == snappy.decompress(body_floor), "encodings differ"

    print(f"{args.series} series x {args.points} points = {samples:,} samples, one core")
    print(
        f"floor (SerializeToString + snappy): {t_floor * 1000:8.1f} ms {samples / t_floor:12,.0f} samples/s"
    )
    print(
        f"ours, labels encoded (cold):        {t_cold * 1000:8.1f} ms {samples / t_cold:12,.0f} samples/s  ratio {t_cold / t_floor:.2f}"
    )
    print(
        f"ours, label blocks cached (warm):   {t_warm * 1000:8.1f} ms {samples / t_warm:12,.0f} samples/s  ratio {t_warm / t_floor:.2f}"
    )


if __name__ == "__main__":
    main()
