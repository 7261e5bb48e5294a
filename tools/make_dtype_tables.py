#!/usr/bin/env python3
"""Writes the golden tables for tests/unit/dtype_test.cc from an independent oracle.

Oracle: ml_dtypes 0.6.0 with numpy 2.4.6 (pinned in tools/requirements-dtypes.txt;
the script refuses other versions, since the files record what they compute).

    python3 -m venv /root/.cache/quanta/dtypes-venv
    /root/.cache/quanta/dtypes-venv/bin/pip install -r tools/requirements-dtypes.txt
    /root/.cache/quanta/dtypes-venv/bin/python tools/make_dtype_tables.py

Files in tests/unit/data/dtypes/, all little-endian:
  <fmt>_decode.bin  the f32 value of every code, as u32 bit patterns in code order
                    (256 for the 8-bit formats, 16 for e2m1, one code per nibble).
  <fmt>_encode.bin  u32 count N, then N u32 f32 input bit patterns, then N u8 codes:
                    ml_dtypes' cast of each input (non-saturating where the format
                    has a choice; ml_dtypes' float4_e2m1fn saturates).
with <fmt> one of e4m3fn, e5m2, e8m0, e2m1. The inputs are every representable
value, every midpoint between neighbouring values (and the overflow midpoint past
the largest) with the f32 values one ulp either side, values far beyond the range,
+-0, +-inf, NaNs, a dense walk through the subnormal range, and random values.

e2m1 files leave NaN inputs out: ml_dtypes 0.6.0 casts NaN to a zero of the
opposite sign, which quanta does not copy (f32_to_e2m1 maps NaN to +0; the test
checks that separately).

--verify-e8m0 also checks, over all 2^32 f32 bit patterns (a few minutes), that
ml_dtypes' float8_e8m0fnu cast follows the rule written in src/quanta/core/dtype.cc.
"""
import argparse
import os
import struct
import sys

import ml_dtypes
import numpy as np

ML_DTYPES_VERSION = "0.6.0"
NUMPY_VERSION = "2.4.6"

FORMATS = {
    "e4m3fn": (ml_dtypes.float8_e4m3fn, 256),
    "e5m2": (ml_dtypes.float8_e5m2, 256),
    "e8m0": (ml_dtypes.float8_e8m0fnu, 256),
    "e2m1": (ml_dtypes.float4_e2m1fn, 16),
}


def f32(values):
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def bits_of(x):
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def from_bits(b):
    return np.asarray(b, dtype=np.uint32).view(np.float32)


def decode_table(dtype, ncodes):
    codes = np.arange(ncodes, dtype=np.uint8)
    return codes.view(dtype).astype(np.float32)


def neighbours(x):
    """x and the f32 values one ulp below and above it."""
    x = f32(x)
    with np.errstate(over="ignore"):
        return np.concatenate([x, np.nextafter(x, np.float32(-np.inf)),
                               np.nextafter(x, np.float32(np.inf))])


def encode_inputs(name, dtype, ncodes, rng):
    table = decode_table(dtype, ncodes)
    finite = np.unique(np.abs(table[np.isfinite(table)]).astype(np.float64))
    parts = [finite]
    if name == "e8m0":
        # Boundaries of the rounding rule: 1.5 * 2^k (linear midpoint) and the
        # geometric midpoint sqrt(2) * 2^k, plus the powers themselves.
        k = np.arange(-127, 128, dtype=np.float64)
        parts += [neighbours(np.ldexp(1.0, k.astype(int))),
                  neighbours(1.5 * np.ldexp(1.0, k.astype(int))),
                  neighbours(np.sqrt(2.0) * np.ldexp(1.0, k.astype(int)))]
        # The f32 subnormal range, where the rule changes (see dtype.cc).
        sub = from_bits(np.concatenate([
            np.arange(0, 0x00800000, 0x00800000 // 256, dtype=np.uint32),
            np.array([1, 2, 0x003FFFFF, 0x00400000, 0x00400001, 0x005FFFFF,
                      0x00600000, 0x007FFFFF, 0x00800000], dtype=np.uint32)]))
        parts.append(sub.astype(np.float64))
        parts.append([3.4028234663852886e38, 2.0 ** 127 * 1.5, 2.0 ** 127 * 1.4999999])
    else:
        mids = (finite[:-1] + finite[1:]) / 2
        # Past the largest finite value: the midpoint to where the next value
        # would be, and values far beyond.
        top = finite[-1]
        ulp = finite[-1] - finite[-2]
        over = [top + ulp / 2, top + ulp, top * 2, top * 1e3, 3.4028234663852886e38]
        parts += [neighbours(mids), neighbours(over)]
        # Dense walk below the smallest normal, down to where everything is 0.
        smallest = finite[1]
        lo = bits_of(f32(smallest / 8))
        hi = bits_of(f32(finite[finite > 0][0] * 16))
        parts.append(from_bits(np.linspace(int(lo), int(hi), 600).astype(np.uint32)))
        parts.append(from_bits(np.array([1, 2, 0x007FFFFF, 0x00800000], dtype=np.uint32)))
    # Random values: uniform bit patterns, and values spread over the format's range.
    parts.append(from_bits(rng.integers(0, 2 ** 32, size=800, dtype=np.uint64).astype(np.uint32)))
    scale = np.ldexp(1.0, rng.integers(-20 if name != "e8m0" else -130,
                                       20 if name != "e8m0" else 130, size=800))
    parts.append(rng.standard_normal(800) * scale)
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.concatenate([np.asarray(p, dtype=np.float64).astype(np.float32).ravel()
                            for p in parts])
    x = np.concatenate([x, -x, f32([0.0, -0.0, np.inf, -np.inf])])
    b = np.unique(bits_of(x))
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF,
                     0x7FFFFFFF, 0xFFFFFFFF, 0x7FE00000], dtype=np.uint32)
    b = b[~np.isnan(from_bits(b))]
    if name != "e2m1":
        b = np.concatenate([b, nans])
    return b


def encode(dtype, bits):
    with np.errstate(invalid="ignore", over="ignore"):
        return from_bits(bits).astype(dtype).view(np.uint8)


def verify_e8m0():
    """The float8_e8m0fnu cast rule in dtype.cc, checked on every f32."""
    dtype = ml_dtypes.float8_e8m0fnu
    bad = 0
    for hi in range(256):
        b = np.arange(hi << 24, (hi + 1) << 24, dtype=np.uint64).astype(np.uint32)
        got = encode(dtype, b)
        sign, exp, frac = b >> 31, (b >> 23) & 0xFF, b & 0x7FFFFF
        want = exp.astype(np.int64) + (frac >= 0x400000)
        want = np.where(exp == 0, np.where(frac == 0, 255, np.where(frac <= 0x400000, 0, 1)), want)
        want = np.where((want > 254) | (exp == 255) | (sign == 1), 255, want)
        bad += int(np.count_nonzero(got != want))
    print("e8m0 rule mismatches over 2^32 inputs:", bad)
    return bad == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "unit", "data", "dtypes"))
    ap.add_argument("--verify-e8m0", action="store_true")
    args = ap.parse_args()
    if ml_dtypes.__version__ != ML_DTYPES_VERSION or np.__version__ != NUMPY_VERSION:
        sys.exit(f"need ml_dtypes=={ML_DTYPES_VERSION} numpy=={NUMPY_VERSION}, have "
                 f"{ml_dtypes.__version__} {np.__version__}")
    if args.verify_e8m0 and not verify_e8m0():
        sys.exit("ml_dtypes' e8m0 cast no longer follows the documented rule")
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20240601)
    total = 0
    for name, (dtype, ncodes) in FORMATS.items():
        table = decode_table(dtype, ncodes)
        data = table.view(np.uint32).astype("<u4").tobytes()
        with open(os.path.join(args.out, f"{name}_decode.bin"), "wb") as f:
            f.write(data)
        total += len(data)
        inputs = encode_inputs(name, dtype, ncodes, rng)
        codes = encode(dtype, inputs)
        data = (struct.pack("<I", len(inputs)) + inputs.astype("<u4").tobytes()
                + codes.astype(np.uint8).tobytes())
        with open(os.path.join(args.out, f"{name}_encode.bin"), "wb") as f:
            f.write(data)
        total += len(data)
        print(f"{name}: {ncodes} codes, {len(inputs)} encode inputs")
    print("total bytes", total)


if __name__ == "__main__":
    main()
