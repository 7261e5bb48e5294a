#!/usr/bin/env python3
"""Serving benchmark: output tokens/s and time to first token at several concurrencies.

Starts `quanta serve` on the given model (default: the default Gemma 3 270M GGUF),
then for each concurrency C runs C client threads, each sending streaming
/v1/completions requests back to back (fixed prompts, temperature 0, ignore_eos,
max_tokens N) for a fixed number of requests per client. Reports aggregate output
tokens/s, TTFT and inter-token latency (ITL: the gaps between a stream's text chunks)
p50/p99 and per-request decode speed, writes them as JSON, and draws them with
`quanta report` (--svg). Standard library only.

  python3 bench/serving/run.py [--model PATH] [--concurrency 1,4,16] [--max-tokens 64] [--requests 3] [--svg F]
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPTS = [
    "The history of the city begins",
    "In a small village by the sea, there lived",
    "The most important idea in physics is",
    "Once upon a time, a young engineer",
    "The recipe for a good bread starts with",
    "When the train finally arrived at the station,",
    "Scientists have long wondered why",
    "The old library was full of",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_completion(port, prompt, max_tokens):
    """Returns (ttft seconds, total seconds, completion tokens, inter-token gaps in seconds)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                       "stream": True, "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    ttft, tokens, last, gaps = None, 0, None, []
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        elif chunk["choices"] and chunk["choices"][0].get("text"):
            now = time.perf_counter()
            if ttft is None:
                ttft = now - t0
            else:
                gaps.append(now - last)
            last = now
    total = time.perf_counter() - t0
    conn.close()
    return ttft if ttft is not None else total, total, tokens, gaps


def run_level(port, concurrency, requests_per_client, max_tokens):
    results, errors = [], []
    lock = threading.Lock()

    def client(i):
        for r in range(requests_per_client):
            prompt = PROMPTS[(i + r) % len(PROMPTS)] + f" (client {i}, request {r})"
            try:
                res = stream_completion(port, prompt, max_tokens)
                with lock:
                    results.append(res)
            except Exception as e:  # counted and reported, never hidden
                with lock:
                    errors.append(str(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttfts = sorted(r[0] for r in results)
    itls = sorted(g for r in results for g in r[3])
    tokens = sum(r[2] for r in results)
    decode = [(r[2] - 1) / (r[1] - r[0]) for r in results if r[2] > 1 and r[1] > r[0]]

    def pct(v, p):
        return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else None  # JSON null

    return {"concurrency": concurrency, "requests": len(results), "errors": len(errors), "wall_s": wall,
            "output_tokens_per_s": tokens / wall, "ttft_p50_s": pct(ttfts, 50), "ttft_p99_s": pct(ttfts, 99),
            "itl_p50_s": pct(itls, 50), "itl_p99_s": pct(itls, 99),
            "per_request_decode_tokens_per_s": statistics.mean(decode) if decode else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "quanta"))
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--requests", type=int, default=3, help="requests per client")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "serving", "results.json"))
    ap.add_argument("--svg", default=os.path.join(ROOT, "bench", "serving", "results.svg"),
                    help="the plot, drawn by `quanta report` ('' for none)")
    args = ap.parse_args()
    model = args.model or subprocess.check_output(["bash", os.path.join(ROOT, "scripts", "fetch-default-model.sh")],
                                                  text=True).strip()
    port = free_port()
    cmd = [args.binary, "serve", "--model-path", model, "--port", str(port), "--context-length", "2048",
           "--max-running-requests", "32"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    log = []
    threading.Thread(target=lambda: [log.append(l) for l in server.stderr], daemon=True).start()
    try:
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None:
                sys.exit("server exited:\n" + "".join(log))
            time.sleep(0.5)
        stream_completion(port, "warm up", 4)
        rows = [run_level(port, int(c), args.requests, args.max_tokens) for c in args.concurrency.split(",")]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"model: {model}; max_tokens {args.max_tokens}, {args.requests} requests per client, temperature 0")
    print("| concurrency | requests | errors | output tok/s | TTFT p50 (s) | TTFT p99 (s) | ITL p50 (ms) | ITL p99 (ms) "
          "| per-request decode tok/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    def f(v, scale=1.0, digits=3):
        return "-" if v is None else f"{v * scale:.{digits}f}"

    for r in rows:
        print(f"| {r['concurrency']} | {r['requests']} | {r['errors']} | {r['output_tokens_per_s']:.2f} | "
              f"{f(r['ttft_p50_s'])} | {f(r['ttft_p99_s'])} | {f(r['itl_p50_s'], 1e3, 1)} | {f(r['itl_p99_s'], 1e3, 1)} | "
              f"{f(r['per_request_decode_tokens_per_s'], 1.0, 2)} |")
    base = rows[0]["output_tokens_per_s"]
    for r in rows[1:]:
        print(f"aggregate throughput at {r['concurrency']} = {r['output_tokens_per_s'] / base:.2f}x that at {rows[0]['concurrency']}")
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=2)
    if args.svg:
        subprocess.check_call([args.binary, "report", args.json, "--svg", args.svg])
        print(f"plot: {args.svg}")


if __name__ == "__main__":
    main()
