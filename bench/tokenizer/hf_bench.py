"""Encode throughput of Hugging Face tokenizers on the same text, single thread.

Usage: python hf_bench.py TOKENIZER_JSON TEXT_FILE [REPEATS] [whole|lines]
("lines" encodes each line on its own, as a server sees prompts; default: the whole text in one call)
Prints: "tokenizers <tokens> tokens <MB/s> MB/s" (best of REPEATS, after a warm-up).
One `encode` call on one string never uses tokenizers' thread pool; RAYON_NUM_THREADS=1
and TOKENIZERS_PARALLELISM=false make sure of it.
"""
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

tok = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8").read()
size = len(text.encode("utf-8"))
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
mode = sys.argv[4] if len(sys.argv) > 4 else "whole"
units = text.splitlines(keepends=True) if mode == "lines" else [text]


def run():
    return sum(len(tok.encode(u, add_special_tokens=False).ids) for u in units)


n = run()
best = 1e30
for _ in range(repeats):
    t0 = time.perf_counter()
    n = run()
    best = min(best, time.perf_counter() - t0)
print(f"tokenizers {n} tokens {size / 1e6 / best:.2f} MB/s")
