"""End-to-end tests of `quanta serve` under hostile or unlucky clients, and of its shutdown (issue #16).

Same servers and helpers as test_server.py; run with tests/e2e/run_server_tests.sh.
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import threading
import time

import requests

from test_server import CASES, MODEL, HTTP_TIMEOUT, Server, assert_error, post


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Sends raw bytes, returns what comes back until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        sock.settimeout(1.0)
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:") and len(body) >= int(line.split(b":")[1]):
                        return out
        return out


def split_response(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    return status, headers, body


def test_malformed_http_gets_a_json_error():
    """httplib's own errors (before any handler runs) carry the JSON error body every other error has."""
    s = Server([])
    try:
        for data, status in [
            (b"GARBAGE\r\n\r\n", 400),
            (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", 400),
            (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        ]:
            got, headers, body = split_response(raw_exchange(s.port, data))
            assert got == status, (data[:60], got, body)
            assert headers.get("content-type", "").startswith("application/json"), headers
            err = json.loads(body)["error"]
            assert err["code"] == status and err["message"] and err["type"], err
        assert requests.get(s.url("/health"), timeout=HTTP_TIMEOUT).status_code == 200  # still serving
    finally:
        s.stop()


def read_stream(port: int, body: dict, started: threading.Event | None = None) -> dict:
    """One streaming completion over a raw socket: its events, whether it ended with [DONE]."""
    data = json.dumps(body).encode()
    out = {"events": [], "done": False, "status": None}
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)  # fmt: skip
        buf = b""
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
            if out["status"] is None and b"\r\n" in buf:
                out["status"] = int(buf.split(b"\r\n", 1)[0].split()[1])
            if started is not None and b"data: " in buf:
                started.set()
            if b"data: [DONE]" in buf:
                break
    for line in buf.split(b"\n"):
        if line.startswith(b"data: "):
            payload = line[len(b"data: ") :].strip()
            if payload == b"[DONE]":
                out["done"] = True
            else:
                out["events"].append(json.loads(payload))
    return out


def test_sigterm_drains_running_streams():
    """SIGTERM with 8 streams running: short ones finish, long ones end with an error event once the
    grace is over; /health and new requests get 503 meanwhile; the process exits 0 within the grace."""
    grace = 2.0
    s = Server(["--shutdown-grace", str(grace)], context=4096)
    try:
        prompt = CASES["short"]["prompt_ids"]
        bodies = [{"model": MODEL, "prompt": prompt, "max_tokens": 4 if i < 4 else 4000, "temperature": 0,
                   "ignore_eos": True, "stream": True} for i in range(8)]  # fmt: skip
        results: list[dict | None] = [None] * 8
        started = [threading.Event() for _ in range(8)]

        def run(i):
            results[i] = read_stream(s.port, bodies[i], started[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for e in started[4:]:
            assert e.wait(30), "a long stream did not start"
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert_error(requests.get(s.url("/health"), timeout=HTTP_TIMEOUT), 503)
        assert_error(post(s, "/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 1}), 503)
        code = s.proc.wait(timeout=grace + 10)
        elapsed = time.monotonic() - t0
        for t in threads:
            t.join(timeout=10)
        assert code == 0, s.log_tail()
        assert elapsed < grace + 6, elapsed
        for i, r in enumerate(results):
            assert r is not None and r["status"] == 200 and r["done"], (i, r and r["events"][-1:])
            last = r["events"][-1]
            if i < 4:
                assert last["choices"][0]["finish_reason"] == "length", last
            else:
                assert last["error"]["code"] == 503 and "shutting down" in last["error"]["message"], last
        log = s.request_log()
        assert len(log) == 8 + 1, log  # the 8 streams and the refused request, each logged once
    finally:
        s.stop()


def test_300_connections_at_once_are_all_served():
    """300 completions whose connections are opened at once: none is reset (they may queue)."""
    n = 300
    s = Server(["--max-concurrent-requests", str(n)])
    try:
        body = json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": 2, "temperature": 0}).encode()
        request = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
        socks = []
        for _ in range(n):  # every connect first, nothing read: the burst lands on the listen queue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", s.port))
            socks.append(sock)
        sel = selectors.DefaultSelector()
        state = {}
        for sock in socks:
            sel.register(sock, selectors.EVENT_WRITE)
            state[sock] = b""
        statuses, errors = [], []
        deadline = time.monotonic() + 120
        pending = set(socks)
        while pending and time.monotonic() < deadline:
            for key, ev in sel.select(timeout=1):
                sock = key.fileobj
                try:
                    if ev & selectors.EVENT_WRITE:
                        sock.sendall(request)  # small: fits the socket buffer at once
                        sel.modify(sock, selectors.EVENT_READ)
                        continue
                    chunk = sock.recv(1 << 16)
                except OSError as e:  # ECONNRESET, ECONNREFUSED, EPIPE
                    errors.append(repr(e))
                    chunk = b""
                if chunk:
                    state[sock] += chunk
                    continue
                if state[sock]:
                    statuses.append(int(state[sock].split(b" ", 2)[1]))
                sel.unregister(sock)
                sock.close()
                pending.discard(sock)
        for sock in pending:
            sock.close()
        assert not errors, f"{len(errors)} connections failed: {errors[:5]}"
        assert not pending, f"{len(pending)} connections still waiting after 120 s"
        assert statuses == [200] * n, sorted(set(statuses))
        assert requests.get(s.url("/health"), timeout=HTTP_TIMEOUT).status_code == 200
    finally:
        s.stop()


def slowloris(port: int, n: int, stop: threading.Event) -> list[socket.socket]:
    """n connections that send a request's header one byte a second, never finishing it."""
    header = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + b"X-Pad: " + b"a" * 4000
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]

    def drip():
        i = 0
        while not stop.is_set() and i < len(header):
            for sock in socks:
                try:
                    sock.send(header[i : i + 1])
                except OSError:
                    pass
            i += 1
            stop.wait(1.0)

    threading.Thread(target=drip, daemon=True).start()
    return socks


def test_slowloris_does_not_starve_a_normal_client():
    """200 connections dripping a header a byte a second; a normal completion still returns within 5 s.
    (httplib gives each connection a thread: --max-concurrent-requests + 16 of them, 272 by default, so
    200 slow connections leave threads free; as many as there are threads would starve the server.)"""
    s = Server([])
    stop = threading.Event()
    socks = []
    try:
        socks = slowloris(s.port, 200, stop)
        time.sleep(3)  # every slow connection holds a worker by now
        t0 = time.monotonic()
        r = post(s, "/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 8, "temperature": 0})
        elapsed = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert elapsed < 5.0, elapsed
    finally:
        stop.set()
        for sock in socks:
            sock.close()
        s.stop()


def test_50_clients_hanging_up_at_random_leave_kv_at_baseline():
    """50 streaming clients, each hanging up after a random number of events (some before the first):
    afterwards nothing runs, the KV in use is back where it was, /health is fine and the server still
    answers exactly."""
    import random

    from test_server import kv_in_use, wait_idle, wait_kv_baseline

    s = Server(["--max-running-requests", "16"])
    try:
        greedy = {"model": MODEL, "prompt": CASES["short"]["prompt"], "max_tokens": 8, "temperature": 0}
        expected = post(s, "/v1/completions", greedy).json()["choices"][0]["text"]
        wait_idle(s)  # the answered request's blocks have gone to the prefix cache
        baseline = kv_in_use(s)
        rng = random.Random(16)

        def client(k: int) -> None:
            body = json.dumps({"model": MODEL, "prompt": CASES["short"]["prompt"], "max_tokens": 200, "temperature": 1.0,
                               "seed": k, "ignore_eos": True, "stream": True}).encode()  # fmt: skip
            events = rng.randint(0, 6)
            with socket.create_connection(("127.0.0.1", s.port), timeout=HTTP_TIMEOUT) as sock:
                sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
                seen = b""
                while seen.count(b"data: ") < events:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    seen += chunk
                if events == 0 and k % 2:
                    sock.shutdown(socket.SHUT_RDWR)  # half of those hang up at once, the rest just close

        threads = [threading.Thread(target=client, args=(k,)) for k in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_kv_baseline(s, baseline, timeout=60)
        assert requests.get(s.url("/health"), timeout=HTTP_TIMEOUT).status_code == 200
        assert post(s, "/v1/completions", greedy).json()["choices"][0]["text"] == expected
        assert s.proc.poll() is None
    finally:
        s.stop()
