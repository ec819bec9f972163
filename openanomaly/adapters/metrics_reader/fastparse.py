"""A query_range body parsed with numpy, without a Python object per sample.

The general path (`parse._parse`) turns every `[ts, "value"]` pair into Python objects (a list,
a float, a str) and then into arrays: ~150 bytes and ~1 us per sample. Here samples never
become Python objects:

1. Quotes that are not escaped delimit every JSON string exactly.
2. A sample's value is the only kind of string that follows `<digit>,` and precedes `]`
   (label names follow `{` or a string, label values and keys follow `:`).
3. Timestamps (the number before each value) and values are read from fixed-width byte windows
   with vectorised arithmetic. Values use Clinger's fast path (a mantissa below 2**53 times or
   divided by an exact power of ten is one correctly rounded operation) and Eisel-Lemire for
   the rest (`decimal_to_double`), so each equals `float(text)` bit for bit. Special values,
   near-halfway and subnormal cases and odd syntax go through `float()` for that sample only.
4. The body with every values array emptied (`[]`) is parsed with a real JSON parser for the
   envelope, the label sets and the warnings, and must agree with what step 2 found.

Any disagreement returns None and the caller uses the general path, so an unusual server costs
speed, never correctness.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from openanomaly.adapters.metrics_reader.decimal_to_double import decimal_to_double

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

_QUOTE, _BACKSLASH, _COMMA, _LBRACKET, _RBRACKET = (ord(c) for c in '"\\,[]')
_DOT, _MINUS, _PLUS, _ZERO = (ord(c) for c in ".-+0")
_TS_WIDTH = 24  # "1763000000.123": far below 24 characters
_VALUE_WIDTH = 32  # longer value texts take the float() path
_POW10 = 10.0 ** np.arange(23)  # exact in float64 up to 1e22
_INT_POW10 = 10 ** np.arange(19, dtype=np.int64)
_MAX_EXACT = 2**53


def _string_bounds(buf: U8, has_backslash: bool) -> tuple[I64, I64] | None:
    """Positions of the opening and closing quote of every JSON string."""
    quotes = np.flatnonzero(buf == _QUOTE)
    if len(quotes) and has_backslash:
        # A quote is escaped when an odd number of backslashes precede it.
        positions = np.arange(len(buf))
        last_other = np.maximum.accumulate(np.where(buf != _BACKSLASH, positions, -1))
        before = np.maximum(quotes - 1, 0)
        run = np.where(quotes > 0, before - last_other[before], 0)
        quotes = quotes[run % 2 == 0]
    if len(quotes) % 2:
        return None
    return quotes[0::2], quotes[1::2]


def _column(buf: U8, starts: I64, k: int) -> U8:
    """Byte k of every field; `buf` is padded (see `parse_fast`), so no index runs off it."""
    out: U8 = buf[starts + k]
    return out


def _timestamps(buf: U8, commas: I64) -> tuple[I64, I64] | None:
    """Timestamps in ms and pair openings; whole seconds of one width take a short cut."""
    width = 0
    while width < 12 and buf[commas[0] - width - 1] != _LBRACKET:
        width += 1
    if 0 < width <= 12 and bool((buf[commas - width - 1] == _LBRACKET).all()):
        total = np.zeros(len(commas), dtype=np.int64)
        plain = True
        for back in range(width, 0, -1):
            d = buf[commas - back].astype(np.int64) - _ZERO
            if not ((d >= 0) & (d <= 9)).all():
                plain = False  # a dot or something else: take the general path
                break
            total = total * 10 + d
        if plain:
            return total * 1000, commas - width - 1
    return _timestamps_general(buf, commas)


def _timestamps_general(buf: U8, commas: I64) -> tuple[I64, I64] | None:
    """Read right to left from each comma back to the "[" of its pair: the timestamp in ms
    (`[1763000000.5,` -> 1763000000500) and where the pair opens."""
    n = len(commas)
    total = np.zeros(n, dtype=np.int64)
    digits_seen = np.zeros(n, dtype=np.int64)
    fraction = np.full(n, -1, dtype=np.int64)  # digits after the dot; -1 while none seen
    pair_open = np.full(n, -1, dtype=np.int64)
    finished = np.zeros(n, dtype=bool)
    for back in range(1, _TS_WIDTH):
        c = _column(buf, commas, -back)
        bracket = (c == _LBRACKET) & ~finished
        pair_open = np.where(bracket, commas - back, pair_open)
        finished |= bracket
        live = ~finished
        d = c.astype(np.int64) - _ZERO
        is_digit = (d >= 0) & (d <= 9) & live
        is_dot = (c == _DOT) & live
        if (live & ~is_digit & ~is_dot).any() or (is_dot & (fraction >= 0)).any():
            return None
        total += np.where(is_digit, d * _INT_POW10[np.minimum(digits_seen, 18)], 0)
        fraction = np.where(is_dot, digits_seen, fraction)
        digits_seen += is_digit
        if finished.all():
            break
    if not finished.all() or (digits_seen == 0).any() or (digits_seen > 18).any():
        return None
    fraction = np.where(fraction < 0, 0, fraction)
    if (fraction > 3).any():
        return None
    return total * _INT_POW10[3 - fraction], pair_open


class _Decimal:
    """Mantissa digits, decimal exponent and sign of each value text, scanned column by column
    (character k of every value at once); `bad` marks texts that are not plain decimals."""

    def __init__(self, buf: U8, starts: I64, lengths: I64) -> None:
        n = len(starts)
        first = _column(buf, starts, 0)
        self.negative = first == _MINUS
        sign_length = (self.negative | (first == _PLUS)).astype(np.int64)
        self.mantissa = np.zeros(n, dtype=np.int64)
        self.digits = np.zeros(n, dtype=np.int64)
        self.decimals = np.zeros(n, dtype=np.int64)
        self.seen_dot = np.zeros(n, dtype=bool)
        self.in_exponent = np.zeros(n, dtype=bool)
        self.exponent_at = np.zeros(n, dtype=np.int64)
        self.exponent = np.zeros(n, dtype=np.int64)
        self.exponent_negative = np.zeros(n, dtype=bool)
        self.exponent_digits = np.zeros(n, dtype=np.int64)
        self.bad = (lengths <= sign_length) | (lengths > _VALUE_WIDTH)
        self.any_exponent = False
        for k in range(int(min(lengths.max(initial=0), _VALUE_WIDTH))):
            live = (k < lengths) & (k >= sign_length) & ~self.bad
            self._step(_column(buf, starts, k), k, live)
        self.bad |= (self.digits == 0) | (self.digits > 18) | (self.exponent_digits > 4)
        self.bad |= self.in_exponent & (self.exponent_digits == 0)

    def _step(self, c: U8, k: int, live: npt.NDArray[np.bool_]) -> None:
        d = c.astype(np.int64) - _ZERO
        is_digit = (d >= 0) & (d <= 9)
        mantissa_digit = live & is_digit & ~self.in_exponent
        room = mantissa_digit & (self.digits < 18)
        np.multiply(self.mantissa, 10, out=self.mantissa, where=room)
        np.add(self.mantissa, d, out=self.mantissa, where=room)
        self.digits += mantissa_digit
        self.decimals += mantissa_digit & self.seen_dot
        dot = live & (c == _DOT) & ~self.in_exponent & ~self.seen_dot
        self.seen_dot |= dot
        e = (c == ord("e")) | (c == ord("E"))
        mark = live & e & ~self.in_exponent & (self.digits > 0)
        accepted = mantissa_digit | dot | mark
        if self.any_exponent or mark.any():  # most bodies have no exponent at all
            self.any_exponent = True
            self.exponent_at = np.where(mark, k, self.exponent_at)
            self.in_exponent |= mark
            sign = (c == _MINUS) | (c == _PLUS)
            exp_sign = live & self.in_exponent & (k == self.exponent_at + 1) & sign
            self.exponent_negative |= exp_sign & (c == _MINUS)
            exp_digit = live & self.in_exponent & is_digit
            np.multiply(self.exponent, 10, out=self.exponent, where=exp_digit)
            np.add(self.exponent, d, out=self.exponent, where=exp_digit)
            self.exponent_digits += exp_digit
            accepted |= exp_sign | exp_digit
        self.bad |= live & ~accepted

    @property
    def power(self) -> I64:
        signed: I64 = np.where(self.exponent_negative, -self.exponent, self.exponent)
        return signed - self.decimals


def _values(buf: U8, raw: bytes, opens: I64, closes: I64) -> npt.NDArray[np.float64]:
    """Float value of each string between opens and closes (exclusive), exactly float()."""
    starts = opens + 1
    scan = _Decimal(buf, starts, closes - starts)
    mantissa, power = scan.mantissa, scan.power
    result = np.empty(len(opens), dtype=np.float64)
    # Clinger's fast path: an exact mantissa times an exact power of ten is one rounding.
    clinger = ~scan.bad & (mantissa <= _MAX_EXACT) & (np.abs(power) <= 22)
    magnitude = mantissa[clinger].astype(np.float64)
    scale_power = power[clinger]
    scale = _POW10[np.abs(scale_power)]
    result[clinger] = np.where(scale_power >= 0, magnitude * scale, magnitude / scale)
    # Longer mantissas and larger exponents: Eisel-Lemire.
    lemire = np.flatnonzero(~scan.bad & ~clinger)
    done = clinger.copy()
    if len(lemire):
        values, ok = decimal_to_double(mantissa[lemire].astype(np.uint64), power[lemire])
        result[lemire] = values
        done[lemire] = ok
    result = np.where(scan.negative & done, -result, result)
    slow = np.flatnonzero(~done)
    if len(slow):
        result[slow] = [_slow_float(raw[opens[i] + 1 : closes[i]]) for i in slow.tolist()]
    return result


def _slow_float(text: bytes) -> float:
    """Prometheus spells infinities +Inf/-Inf; float() reads those and NaN as they are."""
    return float(text)


def parse_fast(
    body: bytes,
) -> tuple[dict[str, Any], list[I64], list[npt.NDArray[np.float64]]] | None:
    """(skeleton answer with empty values, timestamps per result entry, values per entry), or
    None when the body is not laid out the way this parser expects."""
    # Padding lets every fixed-width read past a field's end stay inside the array.
    buf = np.frombuffer(body + b" " * (_VALUE_WIDTH + 8), dtype=np.uint8)
    bounds = _string_bounds(buf, b"\\" in body)
    if bounds is None:
        return None
    opens, closes = bounds
    if len(opens) == 0:
        return None
    before = buf[np.maximum(opens - 1, 0)]
    before2 = buf[np.maximum(opens - 2, 0)]
    after = buf[np.minimum(closes + 1, len(buf) - 1)]
    is_value = (
        (before == _COMMA) & (before2 >= _ZERO) & (before2 <= _ZERO + 9) & (after == _RBRACKET)
    )
    v_open, v_close = opens[is_value], closes[is_value]
    if len(v_open) == 0:
        return None
    # The timestamp sits between the "[" of its pair and the comma before the value.
    found = _timestamps(buf, v_open - 1)
    if found is None:
        return None
    stamps, pair_open = found
    first = buf[np.maximum(pair_open - 1, 0)] == _LBRACKET  # "[[": a series' first pair
    last = buf[np.minimum(v_close + 2, len(buf) - 1)] == _RBRACKET  # '"]]': its last
    array_open = pair_open[first] - 1
    array_close = v_close[last] + 2
    if len(array_open) != len(array_close) or (array_close <= array_open).any():
        return None
    values = _values(buf, body, v_open, v_close)
    pieces, cursor = [], 0
    for start, end in zip(array_open.tolist(), array_close.tolist(), strict=True):
        pieces.append(body[cursor:start])
        pieces.append(b"[]")
        cursor = end + 1
    pieces.append(body[cursor:])
    try:
        skeleton = orjson.loads(b"".join(pieces))
    except orjson.JSONDecodeError:
        return None
    try:
        result = skeleton["data"]["result"]
    except (KeyError, TypeError):
        return None
    if not isinstance(result, list) or len(result) != len(array_open):
        return None
    if any(not isinstance(item, dict) or item.get("values") != [] for item in result):
        return None
    starts = np.flatnonzero(first)
    ends = np.flatnonzero(last) + 1
    if len(starts) != len(ends) or (ends <= starts).any():
        return None
    bounds_list = list(zip(starts.tolist(), ends.tolist(), strict=True))
    ts_parts = [stamps[s:e] for s, e in bounds_list]
    value_parts = [values[s:e] for s, e in bounds_list]
    return skeleton, ts_parts, value_parts
