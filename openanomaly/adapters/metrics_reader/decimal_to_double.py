"""Decimal (mantissa, exponent) -> float64, correctly rounded, for whole arrays at once.

This is the Eisel-Lemire algorithm (D. Lemire, "Number Parsing at a Gigabyte per Second",
2021, sections 5-6), written with numpy uint64 operations: w * 10**q is computed from a 128-bit
truncated power of five, which decides the rounding for all but a few near-halfway inputs. Those
(and subnormal results) are reported as not done, and the caller uses float() for them, so every
result equals float(text) bit for bit.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SMALLEST_POWER = -342
LARGEST_POWER = 308
_MANTISSA_BITS = 52
_MINIMUM_EXPONENT = -1023
_INFINITE_POWER = 0x7FF
_LOW32 = np.uint64(0xFFFFFFFF)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


@cache
def powers_of_five() -> tuple[U64, U64]:
    """High and low 64-bit words of 5**q, q in [-342, 308], normalised to 128 bits with the
    top bit set: truncated for q >= 0, rounded up from below for q < 0 (as in the paper)."""
    high, low = [], []
    for q in range(SMALLEST_POWER, LARGEST_POWER + 1):
        if q >= 0:
            value = 5**q
            while value < 1 << 127:
                value <<= 1
            while value >= 1 << 128:
                value >>= 1
        else:
            power = 5**-q
            bits = power.bit_length()
            if q >= -27:
                value = (1 << (bits + 127)) // power + 1
            else:
                value = (1 << (2 * bits + 128)) // power + 1
                while value >= 1 << 128:
                    value >>= 1
        high.append(value >> 64)
        low.append(value & ((1 << 64) - 1))
    return np.array(high, dtype=np.uint64), np.array(low, dtype=np.uint64)


def _multiply(a: U64, b: U64) -> tuple[U64, U64]:
    """Full 64 x 64 -> 128-bit product as (low, high) words."""
    a_lo, a_hi = a & _LOW32, a >> np.uint64(32)
    b_lo, b_hi = b & _LOW32, b >> np.uint64(32)
    lo_lo = a_lo * b_lo
    hi_lo = a_hi * b_lo
    lo_hi = a_lo * b_hi
    hi_hi = a_hi * b_hi
    cross = (lo_lo >> np.uint64(32)) + (hi_lo & _LOW32) + lo_hi
    low = (cross << np.uint64(32)) | (lo_lo & _LOW32)
    high = (hi_lo >> np.uint64(32)) + (cross >> np.uint64(32)) + hi_hi
    return low, high


def _leading_zeros(w: U64) -> I64:
    zeros = np.zeros(w.shape, dtype=np.int64)
    x = w.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        small = x < np.uint64(1 << (64 - shift))
        zeros += np.where(small, shift, 0)
        x = np.where(small, x << np.uint64(shift), x)
    return zeros


def decimal_to_double(w: U64, q: I64) -> tuple[F64, BoolArray]:
    """w * 10**q for non-negative w; `done` is False where the caller must use float()."""
    n = len(w)
    bits = np.zeros(n, dtype=np.uint64)
    zero = (w == 0) | (q < SMALLEST_POWER)
    infinite = (w != 0) & (q > LARGEST_POWER)
    active = ~zero & ~infinite
    qc = np.clip(q, SMALLEST_POWER, LARGEST_POWER)
    safe_w = np.where(active, w, np.uint64(1))
    lz = _leading_zeros(safe_w)
    wn = np.left_shift(safe_w, lz.astype(np.uint64), dtype=np.uint64)
    high5, low5 = powers_of_five()
    index = qc - SMALLEST_POWER
    lo, hi = _multiply(wn, high5[index])
    mask = np.uint64(0x1FF)  # 64 - (52 + 3) low bits of the high word
    needs_more = (hi & mask) == mask
    _, second_hi = _multiply(wn, low5[index])
    summed = lo + second_hi  # wraps like the reference's wrapping_add
    carry = second_hi > summed
    lo = np.where(needs_more, summed, lo)
    hi = np.where(needs_more & carry, hi + np.uint64(1), hi)
    unsure = (lo == _ALL_ONES) & ((qc < -27) | (qc > 55))
    upper = (hi >> np.uint64(63)).astype(np.int64)
    mantissa = hi >> (upper + 64 - _MANTISSA_BITS - 3).astype(np.uint64)
    power2 = ((qc * (152_170 + 65_536)) >> 16) + 63 + upper - lz - _MINIMUM_EXPONENT
    subnormal = power2 <= 0
    tie = (
        (lo <= np.uint64(1))
        & (qc >= -4)
        & (qc <= 23)
        & ((mantissa & np.uint64(3)) == np.uint64(1))
        & ((mantissa << (upper + 64 - _MANTISSA_BITS - 3).astype(np.uint64)) == hi)
    )
    mantissa = np.where(tie, mantissa & ~np.uint64(1), mantissa)
    mantissa = (mantissa + (mantissa & np.uint64(1))) >> np.uint64(1)
    overflow = mantissa >= np.uint64(2 << _MANTISSA_BITS)
    mantissa = np.where(overflow, np.uint64(1 << _MANTISSA_BITS), mantissa)
    power2 = power2 + overflow.astype(np.int64)
    mantissa &= ~np.uint64(1 << _MANTISSA_BITS)
    to_infinity = power2 >= _INFINITE_POWER
    finite_bits = (
        np.clip(power2, 0, _INFINITE_POWER).astype(np.uint64) << np.uint64(52)
    ) | mantissa
    bits = np.where(active & ~to_infinity, finite_bits, bits)
    bits = np.where(infinite | (active & to_infinity), np.uint64(_INFINITE_POWER << 52), bits)
    done = zero | infinite | (active & ~unsure & ~subnormal)
    return bits.view(np.float64), done
