"""The numpy query_range parser must agree bit for bit with the general (orjson) path."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import orjson
import pytest

from openanomaly.adapters.metrics_reader import parse
from openanomaly.adapters.metrics_reader.decimal_to_double import decimal_to_double
from openanomaly.adapters.metrics_reader.fastparse import parse_fast

SPECIALS = [
    "NaN",
    "+Inf",
    "-Inf",
    "0",
    "-0",
    "1e-05",
    "1E+21",
    "-2.5e-300",
    "5e-324",
    "1.7976931348623157e+308",
    "123456789012345678901234567890",
    "0.1",
    "-7.0",
    "2.2250738585072014e-308",
    "9007199254740993",
    "0." + "0" * 40 + "1",
]


def random_value(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.1:
        return rng.choice(SPECIALS)
    if pick < 0.4:
        x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if not math.isfinite(x):
            x = 1.5
    else:
        x = rng.uniform(-1e6, 1e6)
    style = rng.random()
    if style < 0.4:
        return repr(x)  # shortest round-trip, like Prometheus' strconv 'f'/-1 and VM
    if style < 0.6:
        return format(x, ".12g")  # VictoriaMetrics keeps 12 significant digits
    if style < 0.8:
        return f"{round(x, 3)}"
    return format(x, "f") if abs(x) < 1e20 else repr(x)


def random_body(rng: random.Random) -> bytes:
    result = []
    for i in range(rng.randint(1, 6)):
        labels = {"__name__": "m", "i": str(i)}
        if rng.random() < 0.3:  # label values that look like JSON structure
            labels["w"] = rng.choice(['a"b', "x\\", '],"1"]', '\\"', '[1,"2"]', "ü", "", "\\\\"])
        start = 1_763_000_000 + rng.random() * 1000
        decimals = rng.choice([0, 0, 1, 3])
        values = [
            [
                round(start + 60 * k, decimals) if decimals else int(start) + 60 * k,
                random_value(rng),
            ]
            for k in range(rng.randint(1, 40))
        ]
        result.append({"metric": labels, "values": values})
    answer: dict[str, object] = {
        "status": "success",
        "data": {"resultType": "matrix", "result": result},
    }
    if rng.random() < 0.3:
        answer["warnings"] = ["partial", "2"]
    return orjson.dumps(answer)


@pytest.mark.parametrize("seed", range(40))
def test_fast_path_equals_general_path(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(10):
        body = random_body(rng)
        assert parse_fast(body) is not None  # these bodies are all in the expected layout
        fast = parse.parse_range_body(body)
        with parse.gc_paused():
            general = parse._parse(body)
        assert fast.labels == general.labels
        assert fast.warnings == general.warnings
        for key in general.labels:
            assert fast.timestamps[key].tolist() == general.timestamps[key].tolist()
            assert (
                fast.values[key].view(np.uint64).tolist()
                == general.values[key].view(np.uint64).tolist()
            )


@pytest.mark.parametrize(
    "body",
    [
        # values as numbers rather than strings (not what the API specifies)
        b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,2]]}]}}',
        # timestamps in exponent notation
        b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1.7e9,"2"]]}]}}',
        b'{"status":"success","data":{"resultType":"matrix","result":[]}}',
        b'{"status":"error","error":"boom"}',
    ],
)
def test_unusual_layouts_fall_back_and_still_parse(body: bytes) -> None:
    assert parse_fast(body) is None
    if b'"error"' in body:
        with pytest.raises(Exception, match="boom"):
            parse.parse_range_body(body)
    else:
        parse.parse_range_body(body)


def test_key_order_does_not_matter() -> None:
    body = b'{"data":{"result":[{"values":[[1,"2"]],"metric":{"a":"b"}}],"resultType":"matrix"},"status":"success"}'
    assert parse_fast(body) is not None
    result = parse.parse_range_body(body)
    assert result.labels == {'{a="b"}': {"a": "b"}}
    assert result.values['{a="b"}'].tolist() == [2.0]


def test_gc_is_restored_after_parsing() -> None:
    import gc

    assert gc.isenabled()
    with parse.gc_paused():
        with parse.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with parse.gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()


def test_decimal_to_double_is_correctly_rounded() -> None:
    rng = random.Random(11)
    mantissas, exponents, expected = [], [], []
    for _ in range(50_000):
        mantissa = rng.choice(
            [rng.randint(0, 10**19 - 1), rng.randint(0, 2**53), rng.randint(0, 999)]
        )
        exponent = rng.choice([rng.randint(-350, 320), rng.randint(-25, 25)])
        mantissas.append(mantissa)
        exponents.append(exponent)
        expected.append(float(f"{mantissa}e{exponent}"))
    got, done = decimal_to_double(
        np.array(mantissas, dtype=np.uint64), np.array(exponents, dtype=np.int64)
    )
    want = np.array(expected)
    assert done.mean() > 0.97
    assert (got.view(np.uint64)[done] == want.view(np.uint64)[done]).all()
