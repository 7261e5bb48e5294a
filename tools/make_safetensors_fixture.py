#!/usr/bin/env python3
"""Writes the safetensors reader's golden fixtures with the official safetensors package.

Output (tests/unit/data/safetensors/ by default):
  dtypes.safetensors           one file, one small tensor per dtype, metadata {"format": "pt"}
  sharded/                     a 2-shard checkpoint laid out as transformers' save_pretrained
                               writes it: model-0000K-of-00002.safetensors shards and
                               model.safetensors.index.json
  expected.json                per tensor: file, dtype, shape, raw bytes (hex) and, where
                               numpy can compute them, the values

The files are written by safetensors' own serializer (TensorSpec + serialize_file), which
also covers dtypes numpy lacks (bf16, fp8, fp4): their bytes are handed over as raw buffers.

Usage:
  python3 -m venv /root/.cache/quanta/st-venv
  /root/.cache/quanta/st-venv/bin/pip install -r tools/requirements-safetensors.txt
  /root/.cache/quanta/st-venv/bin/python tools/make_safetensors_fixture.py
"""

import argparse
import json
import os
import shutil

import numpy as np
import safetensors
from safetensors import TensorSpec, safe_open, serialize_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Item:
    """One tensor: the serializer's dtype string, shape as TensorSpec takes it, raw bytes, values."""

    def __init__(self, st_dtype, shape, raw, values=None):
        self.st_dtype = st_dtype
        self.shape = list(shape)
        self.raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
        self.values = values


def from_numpy(arr):
    return Item(arr.dtype.name, arr.shape, arr, arr.reshape(-1).tolist())


def bf16(values, shape):
    # Values chosen exactly representable in bf16, so truncating f32 bits is exact.
    f = np.asarray(values, dtype=np.float32)
    bits = (f.view(np.uint32) >> 16).astype("<u2")
    assert np.array_equal((bits.astype(np.uint32) << 16).view(np.float32), f)
    return Item("bfloat16", shape, bits, f.tolist())


def write(path, items, metadata):
    specs = {
        name: TensorSpec(dtype=it.st_dtype, shape=it.shape, data_ptr=it.raw.ctypes.data,
                         data_len=it.raw.nbytes)
        for name, it in items.items()
    }
    serialize_file(specs, path, metadata=metadata)


def read_header(path):
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(header_len))


def main():
    rng = np.random.default_rng(20240601)
    singles = {
        "f32.matrix": from_numpy(rng.standard_normal((3, 5)).astype("<f4")),
        "f32.scalar": from_numpy(np.array(1.5, dtype="<f4")),
        "f32.empty": from_numpy(np.zeros((0, 4), dtype="<f4")),
        "f64.vector": from_numpy(np.array([1.0 / 3.0, -2.5e-300, 1e300], dtype="<f8")),
        "f16.matrix": from_numpy(np.array([[0.5, -1.25, 65504.0], [6.1e-05, -0.0, 3.140625]],
                                          dtype="<f2")),
        "bf16.matrix": bf16([1.0, -2.0, 0.15625, 2.0**127, -(2.0**-126), 7.5], (2, 3)),
        "i8.vector": from_numpy(np.array([-128, -1, 0, 1, 127, 42, -7], dtype=np.int8)),
        "u8.matrix": from_numpy(np.arange(0, 256, 17, dtype=np.uint8).reshape(4, 4)),
        "i32.vector": from_numpy(np.array([-2**31, -1, 0, 2**31 - 1], dtype="<i4")),
        "i64.vector": from_numpy(np.array([-2**63, 2**40 + 3, 2**63 - 1], dtype="<i8")),
        "bool.vector": from_numpy(np.array([True, False, True, True], dtype=np.bool_)),
        # Narrow float formats as raw codes: fp8 e4m3 [1.0, -448, NaN, 2^-9],
        # e8m0 scales [2^0, 2^-127, 2^127, NaN], fp4 e2m1 pairs (low nibble first).
        "f8_e4m3.vector": Item("float8_e4m3fn", (4,), np.array([0x38, 0xFE, 0x7F, 0x01], np.uint8)),
        "e8m0.vector": Item("float8_e8m0fnu", (4,), np.array([127, 0, 254, 255], np.uint8)),
        # TensorSpec takes fp4's storage shape (bytes) and writes the logical one, [2, 4].
        "f4.matrix": Item("float4_e2m1fn_x2", (2, 2), np.array([0x21, 0x7F, 0x9A, 0x0C], np.uint8)),
    }
    for it in singles.values():
        if it.values is not None and it.st_dtype == "bool":
            it.values = [int(v) for v in it.values]

    # A tiny "model" split across two shards, in transformers' naming and index layout.
    shard_items = [
        {
            "model.embed_tokens.weight": bf16(np.arange(-8, 8, dtype=np.float32) / 4, (4, 4)),
            "model.layers.0.self_attn.q_proj.weight": from_numpy(
                rng.standard_normal((4, 4)).astype("<f4")),
        },
        {
            "model.layers.0.mlp.down_proj.weight": from_numpy(
                rng.integers(-128, 128, (4, 6), dtype=np.int8)),
            "model.norm.weight": from_numpy(np.array([1.0, 0.5, 0.25, 2.0], dtype="<f2")),
            "lm_head.weight": bf16(np.arange(-4, 4, dtype=np.float32) / 4, (2, 4)),
        },
    ]

    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(os.path.join(args.out, "sharded"))

    write(os.path.join(args.out, "dtypes.safetensors"), singles, {"format": "pt"})
    weight_map = {}
    total_size = 0
    n = len(shard_items)
    for k, items in enumerate(shard_items, start=1):
        shard = f"model-{k:05d}-of-{n:05d}.safetensors"
        write(os.path.join(args.out, "sharded", shard), items, {"format": "pt"})
        for name, it in items.items():
            weight_map[name] = shard
            total_size += it.raw.nbytes
    # transformers: json.dumps(index, indent=2, sort_keys=True) + "\n"
    index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    with open(os.path.join(args.out, "sharded", "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")

    expected = {"generator": f"safetensors {safetensors.__version__}, numpy {np.__version__}",
                "tensors": {}, "metadata": {}}
    files = [("dtypes.safetensors", singles)] + [
        (f"sharded/model-{k:05d}-of-{n:05d}.safetensors", items)
        for k, items in enumerate(shard_items, start=1)
    ]
    for rel, items in files:
        header = read_header(os.path.join(args.out, rel))
        expected["metadata"][rel] = header.get("__metadata__", {})
        for name, it in items.items():
            expected["tensors"][name] = {
                "file": rel,
                "dtype": header[name]["dtype"],  # the name safetensors wrote
                "shape": header[name]["shape"],
                "hex": it.raw.tobytes().hex(),
                "values": it.values,
            }

    # Cross-check with safetensors' own reader where numpy has the dtype.
    for rel, items in files:
        with safe_open(os.path.join(args.out, rel), framework="np") as f:
            for name, it in items.items():
                if it.st_dtype not in ("bfloat16", "float8_e4m3fn", "float8_e8m0fnu",
                                       "float4_e2m1fn_x2"):
                    assert f.get_tensor(name).tobytes() == it.raw.tobytes(), name

    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "tests/unit/data/safetensors"))
    args = parser.parse_args()
    main()
