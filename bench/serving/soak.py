#!/usr/bin/env python3
"""Soak test of `quanta serve`: many concurrent clients for a fixed time on loopback.

Starts the server on the default model (Gemma 3 270M Q4_K_M GGUF, with a Gemma chat
template since the GGUF carries none), then runs --clients threads, each with its own
official `openai` client, sending requests back to back until --duration is over: chat
and completions, streaming and not, greedy and seeded sampling, half of them on one of
a few long shared prefixes (prefix-cache hits), some streams hung up on after a few
chunks, and faults over raw sockets (--fault-share): malformed requests (truncated or
deeply nested JSON, out-of-range fields, bad schemas and regexes, invalid UTF-8), which
must be answered 4xx, and well-formed ones sent a few bytes at a time with pauses. Every answer is checked (status, finish reason, token counts). Meanwhile it
samples the server's resident memory (/proc/PID/status), threads, open files and
/metrics. At the end it waits for the server to go idle and checks that no KV block is
still held outside the prefix cache and that every request was logged once.

It reports failed requests, resident memory after warm-up vs at the end (medians over a
minute, since RSS moves with the batch of the moment) and its trend, throughput and TTFT,
writes the samples to --json and exits 1 if anything failed or RSS grew by more than
--max-rss-growth-mb after warm-up.

  python3 bench/serving/soak.py [--duration 600] [--warmup 120] [--clients 64] [--threads 1]

The openai client comes from tests/e2e/requirements.txt, installed in a venv
(build/e2e-venv, as the server tests use) on the first run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.join(ROOT, "build", "e2e-venv")
REQUIREMENTS = os.path.join(ROOT, "tests", "e2e", "requirements.txt")
TEMPLATE = os.path.join(ROOT, "..", "shared", "data", "chat-templates", "google-gemma-2-2b-it.jinja")


def ensure_openai() -> None:
    """Re-runs this script in the venv that has the pinned openai client."""
    try:
        import openai  # noqa: F401

        return
    except ImportError:
        pass
    py = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        sys.exit(f"soak: {py} has no openai package; pip install -r {REQUIREMENTS} into it")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", REQUIREMENTS])
    os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])


WORDS = (
    "river market temple wall merchant harbor winter summer garden library engine signal bridge forest lantern "
    "mountain valley letter window story island morning evening silver copper journey village station music "
    "painter doctor teacher farmer sailor soldier weaver baker miller ferry mirror candle thunder meadow orchard "
    "compass anchor castle tower road field stone cloud rain wind fire water light shadow voice number question"
).split()
QUESTIONS = [
    "Summarize the text above in one sentence.",
    "What happens next?",
    "List three things mentioned above.",
    "Who is the main character?",
    "Write a short title for this.",
    "Continue the story.",
]


def text(rng: random.Random, n_words: int) -> str:
    out, sentence = [], []
    for _ in range(n_words):
        sentence.append(rng.choice(WORDS))
        if len(sentence) >= rng.randint(6, 14):
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    if sentence:
        out.append(" ".join(sentence).capitalize() + ".")
    return " ".join(out)


# Long shared prefixes: a request on one of them finds most of its prompt in the prefix cache.
DOCUMENTS = [text(random.Random(1000 + i), 140) for i in range(4)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024.0  # MB
            elif key == "Threads":
                out[key] = int(value)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def metrics(base: str) -> dict:
    body = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
    out = {}
    for line in body.splitlines():
        m = re.fullmatch(r"(quanta_[a-z_]+) (\S+)", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.disconnected = 0  # streams we hung up on, by design
        self.malformed = 0     # requests sent broken on purpose (answered 4xx, as they must be)
        self.slow = 0          # requests sent a few bytes at a time
        self.failures: list[str] = []
        self.completion_tokens = 0
        self.cached_requests = 0
        self.ttft: list[float] = []  # streams read to the end, seconds
        self.by_kind: dict[str, int] = {}

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def fail(self, what: str):
        with self.lock:
            self.failures.append(what)


# Broken on purpose: each must get a 4xx with an OpenAI-style error, and nothing else may suffer.
MALFORMED = [
    b'{"model": "soak", "prompt": "hi", "max_tokens": ',                      # truncated JSON
    b'{"model": "soak", "prompt": "hi", "max_tokens": 18446744073709551615}',  # 2^64 - 1
    b'{"model": "soak", "prompt": "hi", "n": 1000000000}',
    b'{"model": "soak", "messages": "not a list"}',
    b'[' * 100000,                                                            # deep nesting
    b'{"model": "soak", "prompt": "hi", "response_format": {"type": "json_schema", "json_schema": {"schema": {"not": {}}}}}',
    b'{"model": "soak", "prompt": "hi", "regex": "(a"}',
    b'\xff\xfe not UTF-8',
]


def raw_post(port: int, path: str, body: bytes, rng: random.Random, slow: bool) -> tuple[int, bytes]:
    """POSTs body over a raw socket (slowly: in pieces with pauses), returns (status, response body)."""
    data = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=900) as sock:
        if slow:
            pieces = rng.randint(3, 8)
            step = max(1, len(data) // pieces)
            for i in range(0, len(data), step):
                sock.sendall(data[i:i + step])
                time.sleep(rng.uniform(0.05, 0.4))
        else:
            sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    head, _, rest = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def fault_request(port: int, rng: random.Random, stats: Stats) -> None:
    """A malformed request (must be answered 4xx) or a well-formed one sent slowly (must be answered 200)."""
    if rng.random() < 0.5:
        status, body = raw_post(port, rng.choice(["/v1/completions", "/v1/chat/completions", "/generate"]),
                                rng.choice(MALFORMED), rng, slow=rng.random() < 0.3)
        if not 400 <= status < 500 or b'"error"' not in body:
            raise AssertionError(f"malformed request answered {status}: {body[:200]!r}")
        stats.add(malformed=1)
        return
    body = json.dumps({"model": "soak", "prompt": text(rng, rng.randint(5, 20)), "max_tokens": rng.randint(4, 16),
                       "temperature": 0}).encode()
    status, answer = raw_post(port, "/v1/completions", body, rng, slow=True)
    if status != 200 or json.loads(answer)["choices"][0]["finish_reason"] not in ("stop", "length"):
        raise AssertionError(f"slow request answered {status}: {answer[:200]!r}")
    stats.add(slow=1, ok=1)


def one_request(client, rng: random.Random, model: str, stats: Stats, hangup_share: float) -> None:
    chat = rng.random() < 0.5
    stream = rng.random() < 0.5
    shared = rng.random() < 0.5
    max_tokens = rng.randint(8, 48)
    kw = {"temperature": 0} if rng.random() < 0.5 else {"temperature": 0.8, "seed": rng.randrange(1 << 30)}
    body = (rng.choice(DOCUMENTS) + "\n\n" + rng.choice(QUESTIONS)) if shared else text(rng, rng.randint(10, 60))
    kind = ("chat" if chat else "completion") + ("-stream" if stream else "") + ("-shared" if shared else "")
    with stats.lock:
        stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
    api = client.chat.completions if chat else client.completions
    args = {"model": model, "max_tokens": max_tokens, **kw}
    if chat:
        args["messages"] = [{"role": "user", "content": body}]
    else:
        args["prompt"] = body

    def check(finish, usage, n_text_chunks=None):
        if finish not in ("stop", "length"):
            raise AssertionError(f"finish_reason {finish!r}")
        if usage is None or usage.prompt_tokens <= 0 or not (1 <= usage.completion_tokens <= max_tokens):
            raise AssertionError(f"usage {usage} with max_tokens {max_tokens}")
        if finish == "length" and usage.completion_tokens != max_tokens:
            raise AssertionError(f"finish 'length' after {usage.completion_tokens} of {max_tokens} tokens")
        cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
        if not 0 <= cached < usage.prompt_tokens:
            raise AssertionError(f"cached_tokens {cached} of {usage.prompt_tokens}")
        stats.add(ok=1, completion_tokens=usage.completion_tokens, cached_requests=int(cached > 0))

    if not stream:
        r = api.create(**args)
        if len(r.choices) != 1:
            raise AssertionError(f"{len(r.choices)} choices")
        check(r.choices[0].finish_reason, r.usage)
        return
    hangup_after = rng.randint(1, 4) if rng.random() < hangup_share else None
    t0 = time.perf_counter()
    s = api.create(stream=True, stream_options={"include_usage": True}, **args)
    ttft, finish, usage, n_chunks = None, [], None, 0
    try:
        for chunk in s:
            n_chunks += 1
            if chunk.usage is not None:
                usage = chunk.usage
            for ch in chunk.choices:
                piece = ch.delta.content if chat else ch.text
                if ttft is None and piece:
                    ttft = time.perf_counter() - t0
                if ch.finish_reason is not None:
                    finish.append(ch.finish_reason)
            if hangup_after is not None and n_chunks >= hangup_after:
                stats.add(disconnected=1)
                return  # the finally closes the connection mid-stream
    finally:
        s.close()
    if len(finish) != 1:
        raise AssertionError(f"finish reasons {finish}")
    check(finish[0], usage)
    if ttft is not None:
        with stats.lock:
            stats.ttft.append(ttft)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "quanta"))
    ap.add_argument("--model", default=None, help="default: the default model (scripts/fetch-default-model.sh)")
    ap.add_argument("--chat-template", default=TEMPLATE)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=600, help="seconds of load")
    ap.add_argument("--warmup", type=float, default=120, help="seconds before the RSS reference")
    ap.add_argument("--threads", type=int, default=1, help="server --threads")
    ap.add_argument("--max-total-tokens", type=int, default=4096, help="server KV pool (small: it fills during warm-up)")
    # The [batch, vocab] logits buffer (1 MB a request for Gemma's 262k vocabulary) stays at the largest batch
    # seen: a batch cap the load reaches during warm-up keeps that high-water mark out of the RSS comparison.
    ap.add_argument("--max-running-requests", type=int, default=32, help="server running batch at most")
    ap.add_argument("--hangup-share", type=float, default=0.2, help="share of streams hung up on mid-way")
    ap.add_argument("--fault-share", type=float, default=0.1,
                    help="share of requests that are malformed (4xx expected) or sent slowly, over raw sockets")
    ap.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--max-rss-growth-mb", type=float, default=32.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "serving", "soak_results.json"))
    args = ap.parse_args()
    ensure_openai()
    from openai import OpenAI

    model = args.model or subprocess.check_output(["bash", os.path.join(ROOT, "scripts", "fetch-default-model.sh")],
                                                  text=True).strip()  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [args.binary, "serve", "--model-path", model, "--port", str(port), "--served-model-name", "soak",
           "--context-length", "2048", "--max-total-tokens", str(args.max_total_tokens), "--threads", str(args.threads),
           "--max-running-requests", str(args.max_running_requests),
           "--chat-template", args.chat_template]  # fmt: skip
    log_path = os.path.join(ROOT, "build", "soak-server.log")
    log = open(log_path, "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    print("soak:", " ".join(cmd), f"(log: {log_path})", flush=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                print(open(log_path).read())
                sys.exit(f"soak: the server exited with {server.returncode}")
            try:
                if urllib.request.urlopen(base + "/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit("soak: the server did not come up")
            time.sleep(0.5)
        return run(args, OpenAI, server, base, log_path)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def run(args, OpenAI, server, base: str, log_path: str) -> int:
    stats = Stats()
    samples = []
    start = time.monotonic()
    stop_at = start + args.duration
    done = threading.Event()

    port = int(base.rsplit(":", 1)[1])

    def client_loop(i: int):
        rng = random.Random(args.seed * 1000 + i)
        client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=900)
        while time.monotonic() < stop_at:
            try:
                if rng.random() < args.fault_share:
                    fault_request(port, rng, stats)
                else:
                    one_request(client, rng, "soak", stats, args.hangup_share)
            except Exception as e:  # every failure is counted and reported
                stats.fail(f"client {i} at {time.monotonic() - start:.0f}s: {type(e).__name__}: {e}"[:500])

    def sampler():
        while not done.is_set():
            try:
                s = {"t": round(time.monotonic() - start, 1), **proc_status(server.pid)}
                m = metrics(base)
                s.update({k.removeprefix("quanta_"): m.get(k) for k in (
                    "quanta_num_running_reqs", "quanta_num_queue_reqs", "quanta_kv_blocks_total", "quanta_kv_blocks_used",
                    "quanta_prefix_cache_blocks", "quanta_generation_tokens_total", "quanta_requests_total",
                    "quanta_requests_failed_total", "quanta_preemptions_total", "quanta_prefix_cache_hit_rate")})
                samples.append(s)
                print(f"soak: t={s['t']:6.0f}s rss={s['VmRSS']:.0f}MB threads={s['Threads']} fds={s['fds']} "
                      f"running={s['num_running_reqs']:.0f} queued={s['num_queue_reqs']:.0f} "
                      f"kv={s['kv_blocks_used']:.0f} cache={s['prefix_cache_blocks']:.0f} ok={stats.ok} "
                      f"hangups={stats.disconnected} failed={len(stats.failures)}", flush=True)  # fmt: skip
            except Exception as e:
                stats.fail(f"sampler: {type(e).__name__}: {e}")
            done.wait(args.sample_every)

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(args.clients)]
    mon = threading.Thread(target=sampler, daemon=True)
    mon.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load_s = time.monotonic() - start

    # Idle: nothing running, and every KV block not in the prefix cache is back in the pool.
    idle_deadline = time.monotonic() + 60
    while True:
        m = metrics(base)
        held = m["quanta_kv_blocks_used"] - m["quanta_prefix_cache_blocks"]
        if m["quanta_num_running_reqs"] == 0 and m["quanta_num_queue_reqs"] == 0 and held == 0:
            break
        if time.monotonic() > idle_deadline:
            stats.fail(f"not idle 60 s after the load: {held:.0f} KV blocks held, {m}")
            break
        time.sleep(0.5)
    time.sleep(1.0)  # the last streams' log lines
    done.set()
    mon.join()
    final = {"t": round(time.monotonic() - start, 1), **proc_status(server.pid)}

    entries = []
    with open(log_path) as f:
        for line in f:
            if line.startswith('{"event":"request"'):
                entries.append(json.loads(line))
    attempted = stats.ok + stats.disconnected + stats.malformed + len([f for f in stats.failures if not f.startswith("sampler")])
    # The malformed requests are the only ones that may fail (a body the server could not read at
    # all is answered before it counts as a request, so at most that many).
    if m["quanta_requests_failed_total"] > stats.malformed:
        stats.fail(f"the server counted {m['quanta_requests_failed_total']:.0f} failed requests, "
                   f"{stats.malformed} sent malformed")
    if len(entries) != m["quanta_requests_total"]:
        stats.fail(f"{len(entries)} request log lines for {m['quanta_requests_total']:.0f} requests")
    bad_status = [e for e in entries if e["status"] != 200]
    if len(bad_status) > stats.malformed:
        stats.fail(f"{len(bad_status)} logged requests with an error status ({stats.malformed} malformed), e.g. {bad_status[0]}")

    # RSS moves with the batch of the moment (activations, allocator): compare the medians of the
    # minute after warm-up and of the last minute of load, and fit a line through everything between.
    after = [s for s in samples if args.warmup <= s["t"] < args.duration]
    window = min(60.0, (args.duration - args.warmup) / 2)

    def median_rss(lo, hi):
        v = [s["VmRSS"] for s in after if lo <= s["t"] < hi]
        return statistics.median(v) if v else float("nan")

    rss_warm = median_rss(args.warmup, args.warmup + window)
    rss_end = median_rss(args.duration - window, args.duration)
    rss_max = max((s["VmRSS"] for s in after), default=float("nan"))
    growth = rss_end - rss_warm
    slope = float("nan")
    if len(after) >= 3:
        ts, rs = [s["t"] for s in after], [s["VmRSS"] for s in after]
        tm, rm = statistics.mean(ts), statistics.mean(rs)
        slope = 60 * sum((t - tm) * (r - rm) for t, r in zip(ts, rs)) / sum((t - tm) ** 2 for t in ts)
    ttft = sorted(stats.ttft)
    # The pool's pages become resident as blocks are first used (lowest numbers first): RSS may
    # still rise after warm-up while the peak of blocks in use does.
    kv_peak_warm = max((s["kv_blocks_used"] for s in samples if s["t"] < args.warmup), default=0)
    kv_peak_end = max((s["kv_blocks_used"] for s in samples), default=0)

    def pct(v, p):
        return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")

    gen_tokens = m["quanta_generation_tokens_total"]
    summary = {
        "clients": args.clients, "duration_s": args.duration, "load_s": round(load_s, 1), "warmup_s": args.warmup,
        "server_threads": args.threads, "max_total_tokens": args.max_total_tokens,
        "max_running_requests": args.max_running_requests,
        "requests_attempted": attempted, "requests_ok": stats.ok, "streams_hung_up": stats.disconnected,
        "malformed_requests_refused": stats.malformed, "slow_requests_ok": stats.slow,
        "requests_failed": len(stats.failures), "requests_logged": len(entries),
        "aborted_in_log": sum(e["finish_reason"] == "abort" for e in entries),
        "requests_with_cached_prefix": stats.cached_requests, "prefix_cache_hit_rate": m["quanta_prefix_cache_hit_rate"],
        "preemptions": m["quanta_preemptions_total"],
        "completion_tokens_received": stats.completion_tokens, "tokens_generated": gen_tokens,
        "requests_per_s": round(stats.ok / load_s, 3), "output_tokens_per_s": round(gen_tokens / load_s, 2),
        "stream_ttft_p50_s": round(pct(ttft, 50), 3), "stream_ttft_p99_s": round(pct(ttft, 99), 3),
        "rss_start_mb": round(samples[0]["VmRSS"], 1) if samples else None,
        "rss_after_warmup_mb": round(rss_warm, 1), "rss_max_after_warmup_mb": round(rss_max, 1),
        "rss_end_mb": round(rss_end, 1), "rss_growth_after_warmup_mb": round(growth, 1),
        "rss_trend_after_warmup_mb_per_min": round(slope, 2), "rss_idle_at_end_mb": round(final["VmRSS"], 1),
        "kv_blocks_total": samples[0]["kv_blocks_total"] if samples else None,
        "kv_blocks_peak_in_warmup": kv_peak_warm, "kv_blocks_peak": kv_peak_end,
        "running_peak_in_warmup": max((s["num_running_reqs"] for s in samples if s["t"] < args.warmup), default=0),
        "running_peak": max((s["num_running_reqs"] for s in samples), default=0),
        "threads_end": final["Threads"], "fds_end": final["fds"], "by_kind": stats.by_kind,
    }  # fmt: skip
    with open(args.json, "w") as f:
        json.dump({"summary": summary, "failures": stats.failures[:50], "samples": samples, "final": final}, f, indent=1)
    print(json.dumps(summary, indent=1))
    for msg in stats.failures[:20]:
        print("FAILED:", msg)
    ok = not stats.failures and growth <= args.max_rss_growth_mb
    print(f"soak: {'PASS' if ok else 'FAIL'}: {stats.ok} requests answered, {stats.disconnected} streams hung up on, "
          f"{len(stats.failures)} failed; RSS (median of a minute) {rss_warm:.0f} MB after warm-up, {rss_end:.0f} MB "
          f"at the end ({growth:+.1f} MB, trend {slope:+.2f} MB/min)")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
