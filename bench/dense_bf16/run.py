#!/usr/bin/env python3
"""Side-by-side pp/tg benchmark of quanta and llama.cpp on the same bf16 weights.

Run by run.sh (which makes the models and tools first). For each test (pp<P>, tg<N>) and thread
count, it alternates repetitions of the two engines in one process tree, so that the machine's
swinging memory bandwidth hits both alike:

  quanta:    `quanta bench -m HF_DIR -p P|0 -n 0|N -t T -r 1 --json` per repetition, i.e. one
             warm-up run and one timed run, each in a fresh process (the weights stay in the page
             cache; loading is an mmap and is not timed).
  llama.cpp: llama-cpp-python's low-level API (ctypes over the libllama it compiled), loaded once;
             one context per test with llama-bench's parameters, one warm-up per test as
             llama-bench does (the whole prompt for pp, one token for tg), then per repetition:
             clear the KV memory, time the test. test_prompt/test_gen below are llama-bench's
             functions (tools/llama-bench/llama-bench.cpp) transcribed.

The order inside a pair flips every repetition (q,l / l,q / q,l ...) so that a drift in time does
not favour one side. Before every pair of a tg test, the streaming-read bandwidth at that thread
count is measured with bw.c (best of 5 passes over 1 GiB).

Result: t/s mean +- sample stddev over the repetitions, the ratio of the means, and for tg the
share of the bandwidth limit: (t/s x weight bytes read per token) / measured bandwidth.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

import llama_cpp as L

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_model as M  # noqa: E402  (shapes, for the bytes read per token)


def weight_bytes_per_token():
    """bf16 bytes of every matrix a decode step reads: all projections + the (tied) lm_head.
    The embedding row lookup (2 KB), the f32/bf16 norms (~0.2 MB) and the KV cache (< 15 MB at
    128 positions) are left out; they change the total by < 1.5 %."""
    n = 0
    for _, _, shape, is_norm in M.tensor_plan():
        if not is_norm:
            n += shape[0] * shape[1] * 2
    return n


# ---------------------------------------------------------------- llama.cpp (llama-bench's way)

@L.llama_log_callback
def _quiet_log(level, text, user_data):
    pass


class LlamaPeer:
    def __init__(self, gguf_path):
        L.llama_log_set(_quiet_log, ctypes.c_void_p())
        L.llama_backend_init()
        mp = L.llama_model_default_params()  # as llama-bench: mmap, repack buffers on (default)
        self.model = L.llama_model_load_from_file(gguf_path.encode(), mp)
        if not self.model:
            raise SystemExit(f"llama.cpp could not load {gguf_path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.add_bos = L.llama_vocab_get_add_bos(self.vocab)
        self.bos = L.llama_vocab_bos(self.vocab)
        self.rng = random.Random(1)
        self.ctx = None

    def new_context(self, n_prompt, n_gen):
        # llama-bench's cmd_params_instance::to_llama_cparams with its defaults.
        if self.ctx:
            L.llama_free(self.ctx)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_prompt + n_gen
        cp.n_batch = 2048
        cp.n_ubatch = 512
        cp.type_k = L.GGML_TYPE_F16
        cp.type_v = L.GGML_TYPE_F16
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_AUTO
        cp.embeddings = False
        cp.swa_full = False
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise SystemExit("llama.cpp could not create a context")
        self.mem = L.llama_get_memory(self.ctx)
        self.n_batch = 2048
        L.llama_memory_clear(self.mem, False)

    def _rand(self):
        return self.rng.randrange(self.n_vocab)

    def test_prompt(self, n_prompt, n_threads):
        L.llama_set_n_threads(self.ctx, n_threads, n_threads)
        done = 0
        while done < n_prompt:
            n = min(n_prompt - done, self.n_batch)
            toks = (L.llama_token * n)()
            toks[0] = self.bos if done == 0 and self.add_bos else self._rand()
            for i in range(1, n):
                toks[i] = self._rand()
            if L.llama_decode(self.ctx, L.llama_batch_get_one(toks, n)) != 0:
                raise SystemExit("llama_decode failed (prompt)")
            done += n
        L.llama_synchronize(self.ctx)

    def test_gen(self, n_gen, n_threads):
        L.llama_set_n_threads(self.ctx, n_threads, n_threads)
        token = self.bos if self.add_bos else self._rand()
        batch = L.llama_batch_init(1, 0, 1)
        pos = L.llama_memory_seq_pos_max(self.mem, 0) + 1
        try:
            for _ in range(n_gen):
                batch.n_tokens = 1
                batch.token[0] = token
                batch.pos[0] = pos
                batch.n_seq_id[0] = 1
                batch.seq_id[0][0] = 0
                batch.logits[0] = 1
                pos += 1
                if L.llama_decode(self.ctx, batch) != 0:
                    raise SystemExit("llama_decode failed (generation)")
                L.llama_synchronize(self.ctx)
                token = self._rand()
        finally:
            L.llama_batch_free(batch)

    def warmup(self, n_prompt, n_gen, n_threads):
        if n_prompt:
            self.test_prompt(n_prompt, n_threads)
        if n_gen:
            self.test_gen(1, n_threads)

    def rep(self, n_prompt, n_gen, n_threads):
        L.llama_memory_clear(self.mem, False)
        t0 = time.perf_counter_ns()
        if n_prompt:
            self.test_prompt(n_prompt, n_threads)
        if n_gen:
            self.test_gen(n_gen, n_threads)
        return (n_prompt + n_gen) / ((time.perf_counter_ns() - t0) / 1e9)


# ---------------------------------------------------------------- quanta

def quanta_rep(quanta, hf_dir, n_prompt, n_gen, n_threads):
    out = subprocess.run([quanta, "bench", "-m", hf_dir, "-p", str(n_prompt), "-n", str(n_gen),
                          "-t", str(n_threads), "-r", "1", "--json"], check=True, capture_output=True, text=True)
    res = json.loads(out.stdout)
    assert len(res) == 1, res
    return res[0]["avg_ts"], res[0]


def bandwidth(bw_bin, n_threads):
    out = subprocess.run([bw_bin, str(n_threads), "5"], check=True, capture_output=True, text=True).stdout
    kv = dict(p.split("=") for p in out.split())
    return float(kv["bw_gbs"])


class CpuProbe:
    """How busy the machine was with other processes during a window: (all busy CPU time from
    /proc/stat - the CPU time of this process and its waited-for children) / (cores x wall time).
    Another process on one of the 2 cores slows 2-thread runs several-fold (spinning barriers)."""

    def __init__(self):
        self.ncpu = os.cpu_count()
        self.hz = os.sysconf("SC_CLK_TCK")
        self.foreign = self.wall = 0.0

    def _sample(self):
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / self.hz  # user nice system irq softirq steal
        t = os.times()
        return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system

    def __enter__(self):
        self.s0 = self._sample()
        return self

    def __exit__(self, *exc):
        w1, b1, o1 = self._sample()
        w0, b0, o0 = self.s0
        self.foreign += max(0.0, (b1 - b0) - (o1 - o0))
        self.wall += w1 - w0

    def share(self):
        return self.foreign / (self.ncpu * self.wall) if self.wall else 0.0


def wait_quiet(budget, limit=0.10, window=2.0):
    """Wait (at most budget[0] seconds, shared by the whole run) until the other processes use
    less than `limit` of the CPUs over a `window`-second sample. Returns the load last seen."""
    while True:
        with CpuProbe() as p:
            time.sleep(window)
        load = p.share()
        if load < limit or budget[0] <= 0:
            return load
        budget[0] -= window
        print(f"  waiting for a quiet machine (other load {load:.0%}, {budget[0]:.0f} s of waiting left)",
              file=sys.stderr, flush=True)


def mean_sd(xs):
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quanta", required=True)
    ap.add_argument("--hf", required=True, help="Hugging Face folder (quanta)")
    ap.add_argument("--gguf", required=True, help="GGUF file (llama.cpp)")
    ap.add_argument("--bw", required=True, help="bandwidth microbenchmark binary (bw.c)")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-t", "--threads", default="1,2")
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("--json-out", help="write all samples here")
    ap.add_argument("--bytes-from-quanta", action="store_true",
                    help="weight bytes read per token = the model_size quanta reports (for quantized GGUF files, "
                         "where the bf16 formula does not apply)")
    ap.add_argument("--max-wait", type=float, default=900,
                    help="seconds the run may wait in total, before rep pairs, for other processes to go quiet")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    tests = [(a.n_prompt, 0), (0, a.n_gen)]
    bpt = weight_bytes_per_token()

    budget = [a.max_wait]
    started = time.time()
    peer = LlamaPeer(a.gguf)
    rows = []
    for n_prompt, n_gen in tests:
        if n_prompt == 0 and n_gen == 0:
            continue
        name = f"pp{n_prompt}" if n_prompt else f"tg{n_gen}"
        for nt in threads:
            peer.new_context(n_prompt, n_gen)
            peer.warmup(n_prompt, n_gen, nt)
            q, l, bws, qinfo = [], [], [], None
            probe = CpuProbe()
            for r in range(a.repetitions):
                wait_quiet(budget)
                if n_gen:
                    bws.append(bandwidth(a.bw, nt))
                order = ("q", "l") if r % 2 == 0 else ("l", "q")
                for who in order:
                    with probe:
                        if who == "q":
                            ts, qinfo = quanta_rep(a.quanta, a.hf, n_prompt, n_gen, nt)
                            q.append(ts)
                        else:
                            l.append(peer.rep(n_prompt, n_gen, nt))
                print(f"  {name} t={nt} rep {r + 1}/{a.repetitions}: quanta {q[-1]:.2f} t/s, llama.cpp {l[-1]:.2f} t/s"
                      + (f", bw {bws[-1]:.1f} GB/s" if bws else "") + f", other load {probe.share():.0%}",
                      file=sys.stderr, flush=True)
            rows.append({"test": name, "n_prompt": n_prompt, "n_gen": n_gen, "threads": nt,
                         "quanta_ts": q, "llama_ts": l, "bw_gbs": bws, "other_load": probe.share(),
                         "quanta_isa": qinfo["isa"], "quanta_model_size": qinfo["model_size"]})
    elapsed = time.time() - started
    if a.bytes_from_quanta:
        bpt = rows[0]["quanta_model_size"]

    print("| test | threads | quanta t/s | llama.cpp t/s | quanta / llama.cpp | other load |")
    print("| ---- | ------: | ---------: | ------------: | -----------------: | ---------: |")
    for row in rows:
        qm, qs = mean_sd(row["quanta_ts"])
        lm, ls = mean_sd(row["llama_ts"])
        print(f"| {row['test']} | {row['threads']} | {qm:.2f} ± {qs:.2f} | {lm:.2f} ± {ls:.2f} | {qm / lm:.2f} | {row['other_load']:.0%} |")
    print()
    print(f"Generation against the memory-bandwidth limit ({bpt / 1e9:.3f} GB of weights read per token):")
    print()
    print("| test | threads | read bandwidth GB/s | quanta GB/s | quanta share | llama.cpp GB/s | llama.cpp share |")
    print("| ---- | ------: | ------------------: | ----------: | -----------: | -------------: | --------------: |")
    for row in rows:
        if not row["n_gen"]:
            continue
        bw_m, bw_s = mean_sd(row["bw_gbs"])
        qg = statistics.fmean(row["quanta_ts"]) * bpt / 1e9
        lg = statistics.fmean(row["llama_ts"]) * bpt / 1e9
        print(f"| {row['test']} | {row['threads']} | {bw_m:.1f} ± {bw_s:.1f} | {qg:.1f} | {qg / bw_m:.0%} | {lg:.1f} | {lg / bw_m:.0%} |")
    print()
    print(f"({a.repetitions} repetitions per cell, alternating engines; run took {elapsed:.0f} s; quanta ISA "
          f"{rows[0]['quanta_isa']}; quanta model_size {rows[0]['quanta_model_size'] / 1e9:.3f} GB; other load = CPU "
          f"time of other processes / (cores x time) during the timed runs, 0% on a quiet machine)")

    try:
        rev = subprocess.run(["git", "-C", HERE, "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = "?"
    print(f"(quanta tree {rev}; llama-cpp-python {L.__version__})")

    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                       "machine": platform.processor() or platform.machine(),
                       "llama_cpp_python": L.__version__, "quanta_tree": rev, "bytes_per_token": bpt,
                       "repetitions": a.repetitions, "elapsed_s": elapsed, "rows": rows}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
