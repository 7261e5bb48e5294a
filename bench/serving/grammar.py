#!/usr/bin/env python3
"""Structured outputs: what the grammar costs per decode step, at 1 and 16 concurrent requests.

Starts `quanta serve` on the default model, then for each concurrency C sends C concurrent
/v1/chat/completions requests constrained by a nested JSON Schema (temperature 1, seeded), and
reads the server's counters around them: quanta_grammar_seconds_total (time in the grammar:
checking each draw, building and applying masks, advancing matchers, all on the scheduler
thread), quanta_grammar_masks_total and the tokens generated. A step emits one token per running
stream, so the grammar's share of a step is its time over the wall time of the run. The first
round (C=1, a cold mask cache) is reported separately from a second, warm one. Standard library only.

  python3 bench/serving/grammar.py [--model PATH] [--concurrency 1,16] [--threads 2]
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0},
        "role": {"enum": ["admin", "user", "guest"]},
        "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                                      "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                    "required": ["city", "zip"]},
        "scores": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3},
    },
    "required": ["name", "age", "role", "address", "scores"],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "quanta"))
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "serving", "grammar_results.json"))
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([args.binary, "serve", "--model-path", args.model, "--port", str(port), "--threads",
                             str(args.threads), "--context-length", "1024", "--max-total-tokens", "32768",
                             "--max-running-requests", "32"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except Exception:
                time.sleep(0.2)

        def metrics():
            text = urllib.request.urlopen(url + "/metrics").read().decode()
            return {l.split()[0]: float(l.split()[1]) for l in text.splitlines() if l.startswith("quanta_") and " " in l
                    and not l.startswith("#") and "{" not in l}

        def one(seed, out):
            body = {"messages": [{"role": "user", "content": "Describe a person as JSON."}], "temperature": 1.0,
                    "seed": seed, "max_tokens": 300,
                    "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}}
            req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            out.append(json.load(urllib.request.urlopen(req, timeout=900)))

        rows = []
        rounds = [("1 (cold cache)", 1)] + [(str(c), c) for c in map(int, args.concurrency.split(","))]
        for label, c in rounds:
            before, t0, outs = metrics(), time.time(), []
            threads = [threading.Thread(target=one, args=(1000 * len(rows) + k, outs)) for k in range(c)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.time() - t0
            after = metrics()
            d = {k: after[k] - before.get(k, 0.0) for k in after if k.startswith("quanta_grammar") or k == "quanta_generation_tokens_total"}
            tokens = d["quanta_generation_tokens_total"]
            row = {"concurrency": label, "requests": len(outs), "tokens": int(tokens), "wall_s": round(wall, 2),
                   "grammar_s": round(d["quanta_grammar_seconds_total"], 3),
                   "masks": int(d["quanta_grammar_masks_total"]),
                   "grammar_ms_per_token": round(1000 * d["quanta_grammar_seconds_total"] / max(tokens, 1), 3),
                   "grammar_share_of_step": round(d["quanta_grammar_seconds_total"] / wall, 4),
                   "all_valid": all(o["choices"][0]["finish_reason"] == "stop" and json.loads(o["choices"][0]["message"]["content"]) is not None
                                    for o in outs)}
            rows.append(row)
            print(json.dumps(row))
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
