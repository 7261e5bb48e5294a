#!/usr/bin/env python3
"""Writes the GGUF reader's golden fixtures with gguf-py (the `gguf` package).

Output (tests/unit/data/gguf/ by default):
  dequant/<TYPE>.gguf  one file per ggml type, written by gguf-py's GGUFWriter. Each
                       holds one or more cases: a tensor <case> of that type and a
                       tensor <case>.expected (F32, same shape) with the oracle's
                       dequantization of it. The oracle is gguf-py's
                       gguf.quants.dequantize() (numpy astype(float32) for the plain
                       integer and f64 types, which gguf-py passes through).
                       Cases:
                         quantized  real data (normal, per-row scales) quantized by
                                    gguf-py's own quantizer, for the types it can
                                    quantize (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 BF16 TQ1_0 TQ2_0
                                    MXFP4; F16 via numpy)
                         random     random blocks: every bit pattern is a valid block
                                    for these formats, except f16 scale fields, which
                                    are set to random finite values. For the i-quants
                                    with lookup grids the grid-index fields instead run
                                    through every entry of the grid, so the blocks use
                                    each grid row at least once.
                         special    hand-picked patterns (NaN/Inf/subnormal f16 and
                                    bf16, e8m0 scales 0, 1, 254 and 255, ...)
                         llamacpp   blocks from llama.cpp's own quantizer
                                    (ggml_quantize_chunk), when --libggml is given
                       With --libggml, every case of every type that ggml can
                       dequantize is also run through ggml's type_traits.to_float
                       and must agree with gguf-py bit for bit; and Q1_0 / Q2_0,
                       which the pinned gguf-py cannot dequantize, are written with
                       ggml's to_float as their oracle (without --libggml they are
                       left out, and gguf_test's EveryFixtureIsChecked fails).
                       The committed fixtures were made with libggml-base.so.0.25.3
                       from llama-cpp-python 0.3.36 (built from its sdist).
  metadata.gguf        every metadata value type, arrays of each, arrays of strings,
                       nested arrays, general.alignment = 64 and tensors of
                       several types and ranks (tests/unit/gguf_test.cc holds the
                       same values)

Usage:
  python3 -m venv /root/.cache/quanta/gguf-venv
  /root/.cache/quanta/gguf-venv/bin/pip install -r tools/requirements-gguf.txt
  /root/.cache/quanta/gguf-venv/bin/python tools/make_gguf_fixtures.py \
      --libggml .../llama_cpp/lib/libggml-base.so
"""

import argparse
import ctypes
import os
import shutil
from importlib.metadata import version

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V
from gguf.constants import GGML_QUANT_SIZES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# gguf-py can quantize these (gguf.quants classes with quantize_blocks).
GGUFPY_QUANTIZES = [T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.TQ1_0, T.TQ2_0, T.MXFP4]

# Byte offsets of the f16 fields of each block type (ggml-common.h layouts); random
# blocks get finite values there.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0], T.IQ3_S: [0], T.IQ1_S: [0],
    T.IQ4_NL: [0], T.IQ4_XS: [0], T.TQ1_0: [52], T.TQ2_0: [64],
    T.MXFP4: [], T.NVFP4: [], T.IQ1_M: [],  # IQ1_M: see patch_iq1_m
    41: [0], 42: [0],  # Q1_0, Q2_0 (see GGML_ONLY)
}

# Blocks per random case: enough for every grid row of the grid types.
GRID_BLOCKS = {T.IQ2_XXS: 8, T.IQ2_XS: 16, T.IQ2_S: 32, T.IQ3_XXS: 4, T.IQ3_S: 8, T.IQ1_S: 64}

PLAIN_NUMPY = {T.I8: np.int8, T.I16: np.int16, T.I32: np.int32, T.I64: np.int64, T.F64: np.float64}


def random_f16(rng, n):
    """n random finite f16 bit patterns (zero, subnormal and normal, both signs)."""
    out = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    bad = (out & 0x7C00) == 0x7C00
    while bad.any():
        out[bad] = rng.integers(0, 1 << 16, size=int(bad.sum()), dtype=np.uint32).astype(np.uint16)
        bad = (out & 0x7C00) == 0x7C00
    return out


def put_u16(blocks, off, values):
    blocks[:, off] = (values & 0xFF).astype(np.uint8)
    blocks[:, off + 1] = (values >> 8).astype(np.uint8)


def patch_iq1_m(rng, blocks):
    # IQ1_M spreads its f16 scale over the top nibbles of the four u16 scale words
    # at bytes 48..55: nibble k of the f16 is bits 12..15 of word k.
    d = random_f16(rng, blocks.shape[0])
    for k in range(4):
        off = 48 + 2 * k + 1  # high byte of word k
        blocks[:, off] = (blocks[:, off] & 0x0F) | (((d >> (4 * k)) & 0xF) << 4).astype(np.uint8)


def enumerate_grid(qtype, blocks):
    """Points the grid-index fields of the blocks at every grid row in turn."""
    n = blocks.shape[0]
    for b in range(n):
        blk = blocks[b]
        if qtype == T.IQ2_XXS:  # byte l of the first u32 of each 8-byte group
            for ib in range(8):
                for l in range(4):
                    blk[2 + 8 * ib + l] = (b * 32 + ib * 4 + l) % 256
        elif qtype == T.IQ2_XS:  # low 9 bits of each u16
            for g in range(32):
                idx = (b * 32 + g) % 512
                word = (int(blk[2 + 2 * g]) | int(blk[3 + 2 * g]) << 8) & 0xFE00 | idx
                blk[2 + 2 * g], blk[3 + 2 * g] = word & 0xFF, word >> 8
        elif qtype == T.IQ2_S:  # qs[g] low 8 bits, qh[ib] bits 2l..2l+1 high bits
            for ib in range(8):
                qh = 0
                for l in range(4):
                    g = 4 * ib + l
                    idx = (b * 32 + g) % 1024
                    blk[2 + g] = idx & 0xFF
                    qh |= (idx >> 8) << (2 * l)
                blk[66 + ib] = qh
        elif qtype == T.IQ3_XXS:  # qs[0..63]
            for k in range(64):
                blk[2 + k] = (b * 64 + k) % 256
        elif qtype == T.IQ3_S:  # qs[k] low 8 bits, bit k%8 of qh[k/8]
            for ib in range(8):
                qh = 0
                for j in range(8):
                    k = 8 * ib + j
                    idx = (b * 64 + k) % 512
                    blk[2 + k] = idx & 0xFF
                    qh |= (idx >> 8) << j
                blk[66 + ib] = qh
        elif qtype == T.IQ1_S:  # qs[g] low 8 bits, qh[ib] bits 3l..3l+2 high bits
            for ib in range(8):
                qh = int(blk[34 + 2 * ib]) | int(blk[35 + 2 * ib]) << 8
                qh &= ~0x0FFF & 0xFFFF
                for l in range(4):
                    g = 4 * ib + l
                    idx = (b * 32 + g) % 2048
                    blk[2 + g] = idx & 0xFF
                    qh |= (idx >> 8) << (3 * l)
                blk[34 + 2 * ib], blk[35 + 2 * ib] = qh & 0xFF, qh >> 8


def random_blocks(rng, qtype, n_blocks):
    block, size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint16).astype(np.uint8)
    for off in F16_FIELDS[qtype]:
        put_u16(blocks, off, random_f16(rng, n_blocks))
    if qtype == T.IQ1_M:
        patch_iq1_m(rng, blocks)
    if qtype in GRID_BLOCKS:
        enumerate_grid(qtype, blocks)
    return blocks


def dequant(raw, qtype):
    """The oracle: gguf-py's dequantize(), f32."""
    with np.errstate(over="ignore"):  # MXFP4 scale 255 is 2^127: 12 * 2^127 is Inf, as in ggml
        out = gguf.quants.dequantize(raw, qtype)
    assert out.dtype == np.float32
    return out


class Fixture:
    """One GGUF file of (case, case.expected) tensor pairs."""

    def __init__(self, type_name):
        self.type_name = type_name
        self.cases = []  # (name, raw tensor (uint8 bytes or numpy typed), qtype or None, expected f32)

    def add(self, name, data, expected, raw_dtype=None):
        assert expected.dtype == np.float32
        self.cases.append((name, data, expected, raw_dtype))

    def write(self, path, oracle):
        w = gguf.GGUFWriter(path, arch="quanta-fixture")
        w.add_string("fixture.type", self.type_name)
        w.add_string("fixture.oracle", oracle)
        for name, data, expected, raw_dtype in self.cases:
            w.add_tensor(name, data, raw_dtype=raw_dtype)
            w.add_tensor(name + ".expected", expected)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()


def rows_of(blocks, qtype, n_rows):
    """Reshapes blocks (n_blocks, type_size) into n_rows rows of bytes."""
    return np.ascontiguousarray(blocks.reshape(n_rows, -1))


def real_data(rng, rows, cols):
    # Normal values with a different scale per row, and one outlier per row.
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    x *= np.float32(0.02) * (1 + np.arange(rows, dtype=np.float32)[:, None])
    x[np.arange(rows), rng.integers(0, cols, rows)] *= np.float32(8)
    return x


class TypeTraits(ctypes.Structure):
    # struct ggml_type_traits (ggml/include/ggml.h); checked against ggml_type_name,
    # ggml_blck_size and ggml_type_size before use.
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


ToFloat = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class LibGgml:
    """llama.cpp's ggml through its C API: the quantizer (ggml_quantize_chunk) and the
    reference dequantizers (type_traits.to_float)."""

    def __init__(self, path):
        self.name = os.path.basename(os.path.realpath(path))
        lib = self.lib = ctypes.CDLL(path)
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                            ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
        lib.ggml_quantize_init.argtypes = [ctypes.c_int]
        lib.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
        lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        lib.ggml_type_name.restype = ctypes.c_char_p
        lib.ggml_blck_size.restype = ctypes.c_int64
        lib.ggml_type_size.restype = ctypes.c_size_t

    def sizes(self, qtype):
        return int(self.lib.ggml_blck_size(int(qtype))), int(self.lib.ggml_type_size(int(qtype)))

    def to_float_fn(self, qtype):
        t = self.lib.ggml_get_type_traits(int(qtype)).contents
        assert t.type_name == self.lib.ggml_type_name(int(qtype)), qtype
        assert (t.blck_size, t.type_size) == self.sizes(qtype), qtype
        return ToFloat(t.to_float) if t.to_float else None

    def dequantize(self, qtype, raw, shape):
        fn = self.to_float_fn(qtype)
        raw = np.ascontiguousarray(raw)
        out = np.empty(int(np.prod(shape)), dtype=np.float32)
        fn(raw.ctypes.data, out.ctypes.data, out.size)
        return out.reshape(shape)

    def quantize(self, qtype, x):
        rows, cols = x.shape
        block, size = self.sizes(qtype)
        x = np.ascontiguousarray(x, dtype=np.float32)
        imatrix = None
        if self.lib.ggml_quantize_requires_imatrix(int(qtype)):
            imatrix = np.ascontiguousarray(np.abs(x).mean(axis=0) + np.float32(0.1), dtype=np.float32)
        self.lib.ggml_quantize_init(int(qtype))
        out = np.zeros((rows, cols // block * size), dtype=np.uint8)
        n = self.lib.ggml_quantize_chunk(int(qtype), x.ctypes.data, out.ctypes.data, 0, rows, cols,
                                         imatrix.ctypes.data if imatrix is not None else None)
        assert n == out.nbytes, (qtype, n, out.nbytes)
        return out


def same_bits(a, b):
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    b = np.ascontiguousarray(b, dtype=np.float32).reshape(-1)
    both_nan = np.isnan(a) & np.isnan(b)
    return a.shape == b.shape and bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | both_nan))


def special_cases(qtype):
    """Hand-picked bit patterns, as (raw uint8 blocks, shape)."""
    if qtype == T.F16:
        bits = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF,
                         0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE00, 0x3555, 0xC000], dtype="<u2")
        return bits
    if qtype == T.BF16:
        bits = np.array([0x0000, 0x8000, 0x0001, 0x007F, 0x0080, 0x3F80, 0xBF80, 0x7F7F, 0xFF7F,
                         0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFC0, 0x3EAB, 0xC000], dtype="<u2")
        return bits
    if qtype == T.MXFP4:
        # Every nibble, under e8m0 scales 0 (2^-128, subnormal), 1, 127, 254 and 255.
        blocks = np.zeros((5, 17), dtype=np.uint8)
        for i, e in enumerate([0, 1, 127, 254, 255]):
            blocks[i, 0] = e
            blocks[i, 1:] = np.arange(16, dtype=np.uint8) | (np.arange(16, dtype=np.uint8)[::-1] << 4)
        return blocks
    if qtype == T.NVFP4:
        # Scale bytes 0, 0x7F (both decode to 0), 0x80 and 0xFF (bit 7 ignored), and
        # subnormal / normal ones.
        blocks = np.zeros((2, 36), dtype=np.uint8)
        blocks[0, :4] = [0x00, 0x7F, 0x80, 0xFF]
        blocks[1, :4] = [0x01, 0x07, 0x08, 0x7E]
        blocks[:, 4:] = (np.arange(32) * 7 % 256).astype(np.uint8)
        return blocks
    return None


# Types newer than the pinned gguf-py's dequantizers: golden data from ggml's
# to_float, so only with --libggml. Q2_0 is not even in gguf-py's type enum; the
# writer only needs its id and sizes.
GGML_ONLY = {"Q1_0": 41, "Q2_0": 42}
# llama.cpp's quantizer handles these (ggml.c ggml_quantize_chunk).
GGML_QUANTIZES = ["Q1_0", "Q2_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "MXFP4", "NVFP4",
                  "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "TQ1_0", "TQ2_0", "IQ2_XXS", "IQ2_XS",
                  "IQ3_XXS", "IQ3_S", "IQ2_S", "IQ1_S", "IQ1_M", "IQ4_NL", "IQ4_XS"]


def make_dequant_fixtures(out_dir, rng, libggml):
    os.makedirs(out_dir, exist_ok=True)
    gguf_py = f"gguf-py {version('gguf')} gguf.quants.dequantize (numpy {np.__version__})"
    written, cross_checked = [], 0

    types = [(q.name, q) for q in T if q.name not in GGML_ONLY]
    if libggml is not None:
        for name, tid in GGML_ONLY.items():
            GGML_QUANT_SIZES.setdefault(tid, libggml.sizes(tid))
            types.append((name, tid))

    for name, qtype in types:
        if name in ("Q8_1", "Q8_K"):
            continue  # activation-only: neither gguf-py nor ggml dequantizes them
        ggml_only = name in GGML_ONLY
        block, size = GGML_QUANT_SIZES[qtype]
        if ggml_only:
            oracle = f"ggml type_traits.to_float ({libggml.name})"

            def golden(raw, shape, qtype=qtype):
                return libggml.dequantize(qtype, raw, shape)
        else:
            oracle = gguf_py

            def golden(raw, shape, qtype=qtype):
                return dequant(raw, qtype).reshape(shape)

        fx = Fixture(name)
        if qtype in PLAIN_NUMPY:
            dt = PLAIN_NUMPY[qtype]
            if dt == np.float64:
                x = np.concatenate([rng.standard_normal(12) * 1e3, [1e300, -1e-300, 3.4e38, 3.5e38, 1 / 3, -0.0]])
                x = x.astype(np.float64).reshape(3, 6)
            else:
                info = np.iinfo(dt)
                x = rng.integers(info.min, info.max, size=(3, 6), dtype=dt, endpoint=True)
                x[0, :2] = [info.min, info.max]
            with np.errstate(over="ignore"):  # f64 3.5e38 -> f32 inf on purpose
                fx.add("random", x, x.astype(np.float32))
            fx.write(os.path.join(out_dir, name + ".gguf"), f"numpy {np.__version__} astype(float32)")
            written.append(name)
            continue

        if qtype == T.F32:
            x = rng.standard_normal((4, 8)).astype(np.float32)
            x[0, :4] = [np.inf, -np.inf, np.nan, 1e-45]
            fx.add("random", x, golden(x.view(np.uint8), x.shape))
        elif qtype == T.F16:
            x = real_data(rng, 2, 64).astype(np.float16)
            fx.add("quantized", x, golden(x.view(np.uint8), x.shape))
            bits = random_f16(rng, 128).reshape(2, 64)
            fx.add("random", bits.view(np.float16), golden(bits.view(np.uint8), bits.shape))
        elif qtype in GGUFPY_QUANTIZES:
            x = real_data(rng, 2, 256)
            q = gguf.quants.quantize(x, qtype)
            fx.add("quantized", q, golden(q, (2, 256)), raw_dtype=qtype)
        if qtype == T.BF16:
            bits = rng.integers(0, 1 << 16, size=(2, 64), dtype=np.uint32).astype(np.uint16)
            raw = bits.view(np.uint8).reshape(2, 128)
            fx.add("random", raw, golden(raw, (2, 64)), raw_dtype=qtype)
        elif block > 1:
            n_blocks = GRID_BLOCKS.get(qtype, 2 if block == 256 else 8)
            n_rows = 2 if n_blocks % 2 == 0 else 1
            blocks = random_blocks(rng, qtype, n_blocks)
            raw = rows_of(blocks, qtype, n_rows)
            fx.add("random", raw, golden(raw, (n_rows, n_blocks * block // n_rows)), raw_dtype=qtype)

        special = special_cases(qtype)
        if special is not None:
            raw = special.view(np.uint8).reshape(1, -1)
            fx.add("special", raw, golden(raw, (1, raw.size // size * block)), raw_dtype=qtype)

        if libggml is not None and name in GGML_QUANTIZES:
            x = real_data(rng, 1, 256)
            q = libggml.quantize(qtype, x)
            fx.add("llamacpp", q, golden(q, (1, 256)), raw_dtype=qtype)

        # The two oracles must agree wherever both exist.
        if libggml is not None and not ggml_only and libggml.to_float_fn(qtype) is not None:
            for case, data, expected, _ in fx.cases:
                raw = np.ascontiguousarray(data).view(np.uint8)
                assert same_bits(libggml.dequantize(qtype, raw, expected.shape), expected), (name, case)
                cross_checked += 1

        fx.write(os.path.join(out_dir, name + ".gguf"), oracle)
        written.append(name)
    return written, cross_checked


def make_metadata_fixture(path):
    w = gguf.GGUFWriter(path, arch="quanta-test")
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.1)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "h\u00e9llo w\u00f6rld \u2713")
    w.add_key_value("test.string_empty", "", V.STRING)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62) - 7)
    w.add_float64("test.f64", 0.1)
    w.add_key_value("test.array.u8", [0, 1, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.array.i8", [-128, 0, 127], V.ARRAY, sub_type=V.INT8)
    w.add_key_value("test.array.u16", [0, 65535], V.ARRAY, sub_type=V.UINT16)
    w.add_key_value("test.array.i16", [-32768, 32767], V.ARRAY, sub_type=V.INT16)
    w.add_key_value("test.array.u32", [1, 4294967295], V.ARRAY, sub_type=V.UINT32)
    w.add_key_value("test.array.i32", [-2147483648, 2147483647, 5], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("test.array.f32", [0.5, -2.25, 1e30], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("test.array.bool", [True, False, True], V.ARRAY, sub_type=V.BOOL)
    w.add_key_value("test.array.string", ["a", "", "\u00fcn\u00efcode", "tab\tnew\nline"], V.ARRAY,
                    sub_type=V.STRING)
    w.add_key_value("test.array.u64", [0, 2**64 - 1], V.ARRAY, sub_type=V.UINT64)
    w.add_key_value("test.array.i64", [-(2**63), 2**63 - 1], V.ARRAY, sub_type=V.INT64)
    w.add_key_value("test.array.f64", [0.1, -1e300], V.ARRAY, sub_type=V.FLOAT64)
    # Nested arrays: gguf-py types inner lists by their first item (int -> INT32).
    w.add_array("test.array.nested", [[1, 2], [3], [4, 5, 6]])
    w.add_array("test.array.nested_strings", [["x", "y"], ["z"]])
    w.add_array("test.array.nested3", [[[7]], [[8, 9]]])

    # Tensors: GGUF order ne is the numpy shape reversed.
    w.add_tensor("t.f32", np.arange(15, dtype=np.float32).reshape(3, 5))
    w.add_tensor("t.f16", (np.arange(24, dtype=np.float32) / 4).astype(np.float16).reshape(2, 3, 4))
    x = np.linspace(-1, 1, 128, dtype=np.float32).reshape(2, 64)
    w.add_tensor("t.q8_0", gguf.quants.quantize(x, T.Q8_0), raw_dtype=T.Q8_0)
    w.add_tensor("t.i32", np.array([-3, -2, -1, 0, 1, 2, 3], dtype=np.int32))
    w.add_tensor("t.4d", np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "unit", "data", "gguf"))
    ap.add_argument("--libggml", default=None, help="path to libggml.so (or libggml-base.so) for llama.cpp blocks")
    args = ap.parse_args()

    rng = np.random.default_rng(20250917)
    libggml = LibGgml(args.libggml) if args.libggml else None
    dq_dir = os.path.join(args.out, "dequant")
    shutil.rmtree(dq_dir, ignore_errors=True)
    written, cross_checked = make_dequant_fixtures(dq_dir, rng, libggml)
    make_metadata_fixture(os.path.join(args.out, "metadata.gguf"))
    print("wrote", len(written), "dequant fixtures:", " ".join(written))
    if libggml is not None:
        print(f"gguf-py and ggml ({libggml.name}) agree bit for bit on {cross_checked} cases")


if __name__ == "__main__":
    main()
