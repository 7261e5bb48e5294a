"""End-to-end tests of `quanta serve` with the official OpenAI client and raw HTTP.

The server runs the tiny real chat model tests/e2e/fixtures/tiny-chat (or $QUANTA_E2E_FIXTURE) (made by
tools/make_chat_fixture.py), whose reference.json holds what transformers computes: prompt ids and
32 greedy tokens (EOS ignored) for a few completion prompts and chat message lists. Greedy output
must match it exactly, whatever the batching.

Run with tests/e2e/run_server_tests.sh [QUANTA_BINARY]; the binary comes from $QUANTA_BINARY
(default build/quanta). $QUANTA_E2E_SERVER_ARGS adds arguments to every `quanta serve`.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shlex
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import openai
import pytest
import requests
from openai import OpenAI

REPO = Path(__file__).resolve().parent.parent.parent
# $QUANTA_E2E_FIXTURE picks another fixture of the same kind (tiny-chat-moe: the same tokenizer
# with mixture-of-experts blocks; CTest runs the suite on both).
FIXTURE = REPO / "tests" / "e2e" / "fixtures" / os.environ.get("QUANTA_E2E_FIXTURE", "tiny-chat")
DEFAULT_MODEL = REPO / "models" / "gemma-3-270m-q4_k_m.gguf"  # scripts/fetch-default-model.sh
REF = json.loads((FIXTURE / "reference.json").read_text())
CASES = {c["name"]: c for c in REF["cases"]}
COMPLETION_CASES = [c["name"] for c in REF["cases"] if c["kind"] == "completion"]
CHAT_CASES = [c["name"] for c in REF["cases"] if c["kind"] == "chat"]
N_GREEDY = REF["n_greedy"]

MODEL = "tiny-chat"
CONTEXT = 256  # --context-length of the servers: small, so the context errors are cheap to reach
API_KEY = "sk-quanta-e2e"
STARTUP_TIMEOUT = 60.0
HTTP_TIMEOUT = 60.0
# A tool for the tool-call suites (test_server_tools.py, test_server_structured.py). The bounded
# city keeps a constrained call within a small max_tokens.
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}

# Greedy with EOS ignored: the request shape that must reproduce the reference.
GREEDY = dict(temperature=0, max_tokens=N_GREEDY, extra_body={"ignore_eos": True})


# --------------------------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `quanta serve` process on 127.0.0.1, its log in a temporary file."""

    def __init__(self, extra: list[str], context: int = CONTEXT, model: Path = FIXTURE):
        binary = os.environ.get("QUANTA_BINARY", str(REPO / "build" / "quanta"))
        if not Path(binary).is_file():
            pytest.fail(f"no quanta binary at {binary} (set QUANTA_BINARY)")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="quanta-serve-", suffix=".log", delete=False)
        cmd = [
            binary, "serve",
            "--model-path", str(model),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--served-model-name", MODEL,
            "--context-length", str(context),
            "--threads", "1",
            *extra,
            *shlex.split(os.environ.get("QUANTA_E2E_SERVER_ARGS", "")),
        ]  # fmt: skip
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"quanta serve exited with {self.proc.returncode}: {shlex.join(cmd)}\n{self.log_tail()}")
            try:
                if requests.get(self.base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"quanta serve did not answer /health in {STARTUP_TIMEOUT}s\n{self.log_tail()}")
            time.sleep(0.1)

    def url(self, path: str) -> str:
        return self.base + path

    def log_tail(self, n: int = 40) -> str:
        if not self.log.closed:
            self.log.flush()
        lines = Path(self.log.name).read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def request_log(self) -> list[dict]:
        """The per-request log lines (JSON, src/quanta/server/request_log.h) written so far."""
        lines = Path(self.log.name).read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"event":"request"')]

    def request_log_entry(self, match, timeout: float = 10.0) -> dict:
        """The log line for which match(line) holds; a stream's line comes once its last byte is sent."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.request_log() if match(e)]
            if found:
                assert len(found) == 1, found
                return found[0]
            assert time.monotonic() < deadline, f"no such request log line after {timeout}s\n{self.log_tail()}"
            time.sleep(0.05)

    def metrics(self) -> dict[str, float]:
        r = requests.get(self.url("/metrics"), timeout=HTTP_TIMEOUT)
        assert r.status_code == 200, r.text
        out = {}
        for line in r.text.splitlines():
            # Lenient here (test_metrics checks the format): a malformed line is skipped.
            m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)", line)
            if m:
                try:
                    out[m.group(1)] = float(m.group(2))
                except ValueError:
                    pass
        return out


@pytest.fixture(scope="module")
def server():
    s = Server([])
    yield s
    alive = s.proc.poll() is None
    tail = s.log_tail()
    s.stop()
    assert alive, f"the server died during the tests (exit status {s.proc.returncode})\n{tail}"


@pytest.fixture(scope="module")
def auth_server():
    s = Server(["--api-key", API_KEY])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.url("/v1"), api_key="unused", max_retries=0, timeout=HTTP_TIMEOUT)


def default_model_server(extra: list[str], context: int):
    """A module's `quanta serve` of the default model: yields it, then fails the module if it died."""
    if not DEFAULT_MODEL.is_file():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/fetch-default-model.sh (scripts/test.sh does)")
    s = Server(extra, context=context, model=DEFAULT_MODEL)
    yield s
    alive = s.proc.poll() is None
    s.stop()
    assert alive, "the server died during the tests"


def post(server: Server, path: str, body, **kw) -> requests.Response:
    return requests.post(server.url(path), json=body, timeout=HTTP_TIMEOUT, **kw)


def post_raw(server: Server, path: str, data: bytes, **kw) -> requests.Response:
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    return requests.post(server.url(path), data=data, headers=headers, timeout=HTTP_TIMEOUT, **kw)


def assert_error(r: requests.Response, status: int, param: str | None = None) -> dict:
    """An OpenAI-style error: the status, and {"error": {"message", "type", "param", "code"}}."""
    assert r.status_code == status, f"want {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    if param is not None:
        assert err["param"] == param, err
    return err


def sse_events(r: requests.Response) -> list:
    """The JSON payloads of a server-sent-event stream, which must end with `data: [DONE]`."""
    assert r.status_code == 200, r.text[:500]
    assert r.headers.get("Content-Type", "").startswith("text/event-stream"), r.headers
    events, done = [], False
    for line in r.iter_lines(decode_unicode=False):
        if not line:
            continue
        line = line.decode("utf-8")
        assert line.startswith("data: "), line
        payload = line[len("data: ") :]
        assert not done, f"data after [DONE]: {payload}"
        if payload == "[DONE]":
            done = True
            continue
        events.append(json.loads(payload))
    assert done, "the stream did not end with [DONE]"
    return events


def chat_messages(name: str) -> list[dict]:
    return CASES[name]["messages"]


def expected_text(name: str) -> str:
    # The server skips special tokens in text by default (skip_special_tokens=True).
    return CASES[name]["greedy_text_skip_special"]


# --------------------------------------------------------------------------------------------- basics


def test_health(server):
    r = requests.get(server.url("/health"), timeout=HTTP_TIMEOUT)
    assert r.status_code == 200


def test_health_generate(server):
    r = requests.get(server.url("/health_generate"), timeout=HTTP_TIMEOUT)
    assert r.status_code == 200


def test_models_list(server, client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == [MODEL]
    raw = requests.get(server.url("/v1/models"), timeout=HTTP_TIMEOUT).json()
    assert raw["object"] == "list"
    assert raw["data"][0]["object"] == "model"
    assert raw["data"][0]["max_model_len"] == CONTEXT


def test_get_model_info(server):
    r = requests.get(server.url("/get_model_info"), timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    info = r.json()
    assert Path(info["model_path"]).resolve() == FIXTURE.resolve()
    assert info["is_generation"] is True


def test_get_server_info(server):
    r = requests.get(server.url("/get_server_info"), timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert isinstance(r.json(), dict)


def test_unknown_endpoint_is_json_404(server):
    assert_error(requests.get(server.url("/v1/nope"), timeout=HTTP_TIMEOUT), 404)


# --------------------------------------------------------------------------------------------- completions


@pytest.mark.parametrize("name", COMPLETION_CASES)
def test_completion_greedy_matches_reference(client, name):
    c = CASES[name]
    r = client.completions.create(model=MODEL, prompt=c["prompt"], **GREEDY)
    assert r.object == "text_completion"
    assert r.model == MODEL
    assert len(r.choices) == 1
    assert r.choices[0].text == expected_text(name)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(c["prompt_ids"])
    assert r.usage.completion_tokens == N_GREEDY
    assert r.usage.total_tokens == len(c["prompt_ids"]) + N_GREEDY


@pytest.mark.parametrize("name", COMPLETION_CASES)
def test_completion_stream_matches_reference(client, name):
    c = CASES[name]
    stream = client.completions.create(model=MODEL, prompt=c["prompt"], stream=True, **GREEDY)
    text, finish = "", []
    for chunk in stream:
        assert chunk.object == "text_completion"
        for ch in chunk.choices:
            assert ch.index == 0
            text += ch.text
            if ch.finish_reason is not None:
                finish.append(ch.finish_reason)
    assert text == expected_text(name)
    assert finish == ["length"]


def test_completion_prompt_as_token_ids(client):
    c = CASES["medium"]
    r = client.completions.create(model=MODEL, prompt=c["prompt_ids"], **GREEDY)
    assert r.choices[0].text == expected_text("medium")
    assert r.usage.prompt_tokens == len(c["prompt_ids"])


def test_completion_stops_at_eos(client):
    # A case whose greedy run holds <|im_end|>: without ignore_eos, generation stops there.
    name = next(n for n in COMPLETION_CASES if "eos_at" in CASES[n])
    c = CASES[name]
    r = client.completions.create(model=MODEL, prompt=c["prompt"], temperature=0, max_tokens=N_GREEDY)
    assert r.choices[0].text == c["until_eos_text"]
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens in (c["eos_at"], c["eos_at"] + 1)


def test_completion_default_max_tokens_is_16(client):
    r = client.completions.create(model=MODEL, prompt=CASES["short"]["prompt"], temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 16
    assert r.choices[0].text == "".join(CASES["short"]["greedy_pieces"][:16])
    assert r.choices[0].finish_reason == "length"


# --------------------------------------------------------------------------------------------- chat


@pytest.mark.parametrize("name", CHAT_CASES)
def test_chat_greedy_matches_reference(client, name):
    c = CASES[name]
    r = client.chat.completions.create(model=MODEL, messages=chat_messages(name), **GREEDY)
    assert r.object == "chat.completion"
    assert r.model == MODEL
    assert len(r.choices) == 1
    msg = r.choices[0].message
    assert msg.role == "assistant"
    assert msg.content == expected_text(name)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(c["prompt_ids"])
    assert r.usage.completion_tokens == N_GREEDY


@pytest.mark.parametrize("name", CHAT_CASES)
def test_chat_stream_matches_reference(client, name):
    stream = client.chat.completions.create(model=MODEL, messages=chat_messages(name), stream=True, **GREEDY)
    text, roles, finish, ids = "", [], [], set()
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        ids.add(chunk.id)
        assert chunk.usage is None
        for ch in chunk.choices:
            if ch.delta.role is not None:
                roles.append(ch.delta.role)
            text += ch.delta.content or ""
            if ch.finish_reason is not None:
                finish.append(ch.finish_reason)
    assert roles == ["assistant"]
    assert len(ids) == 1
    assert text == expected_text(name)
    assert finish == ["length"]


def test_chat_stops_at_eos(client):
    c = CASES["chat_eos"]
    r = client.chat.completions.create(model=MODEL, messages=chat_messages("chat_eos"), temperature=0, max_tokens=N_GREEDY)
    assert r.choices[0].message.content == c["until_eos_text"]
    assert r.choices[0].finish_reason == "stop"


def test_chat_stops_at_eos_stream(client):
    c = CASES["chat_eos"]
    stream = client.chat.completions.create(
        model=MODEL, messages=chat_messages("chat_eos"), temperature=0, max_tokens=N_GREEDY, stream=True
    )
    text, finish = "", []
    for chunk in stream:
        for ch in chunk.choices:
            text += ch.delta.content or ""
            if ch.finish_reason:
                finish.append(ch.finish_reason)
    assert text == c["until_eos_text"]
    assert finish == ["stop"]


def test_chat_max_completion_tokens(client):
    name = "chat_user"
    r = client.chat.completions.create(
        model=MODEL, messages=chat_messages(name), temperature=0, max_completion_tokens=5, extra_body={"ignore_eos": True}
    )
    assert r.usage.completion_tokens == 5
    assert r.choices[0].message.content == "".join(CASES[name]["greedy_pieces"][:5])
    assert r.choices[0].finish_reason == "length"


def test_chat_stream_include_usage(client):
    name = "chat_system"
    stream = client.chat.completions.create(
        model=MODEL, messages=chat_messages(name), stream=True, stream_options={"include_usage": True}, **GREEDY
    )
    chunks = list(stream)
    *body, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == len(CASES[name]["prompt_ids"])
    assert last.usage.completion_tokens == N_GREEDY
    assert last.usage.total_tokens == len(CASES[name]["prompt_ids"]) + N_GREEDY
    assert all(ch.usage is None for ch in body)
    assert "".join(ch.delta.content or "" for c in body for ch in c.choices) == expected_text(name)


def test_completion_stream_include_usage(client):
    name = "short"
    stream = client.completions.create(
        model=MODEL, prompt=CASES[name]["prompt"], stream=True, stream_options={"include_usage": True}, **GREEDY
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == len(CASES[name]["prompt_ids"])
    assert chunks[-1].usage.completion_tokens == N_GREEDY


# --------------------------------------------------------------------------------------------- sampling


def test_n_with_seed_is_reproducible(client):
    kw = dict(model=MODEL, messages=chat_messages("chat_user"), n=3, temperature=1.0, seed=1234, max_tokens=12,
              extra_body={"ignore_eos": True})  # fmt: skip
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert sorted(ch.index for ch in a.choices) == [0, 1, 2]
    ta = [ch.message.content for ch in sorted(a.choices, key=lambda c: c.index)]
    tb = [ch.message.content for ch in sorted(b.choices, key=lambda c: c.index)]
    assert ta == tb
    assert len(set(ta)) > 1, f"n=3 at temperature 1 gave three identical choices: {ta}"
    assert a.usage.completion_tokens == 3 * 12
    assert a.usage.prompt_tokens == len(CASES["chat_user"]["prompt_ids"])


def test_n_greedy_choices_all_equal_reference(client):
    r = client.completions.create(model=MODEL, prompt=CASES["short"]["prompt"], n=4, **GREEDY)
    assert sorted(ch.index for ch in r.choices) == [0, 1, 2, 3]
    assert all(ch.text == expected_text("short") for ch in r.choices)


def test_n_stream_indexes(client):
    stream = client.completions.create(model=MODEL, prompt=CASES["short"]["prompt"], n=2, stream=True, **GREEDY)
    texts = {0: "", 1: ""}
    for chunk in stream:
        for ch in chunk.choices:
            texts[ch.index] += ch.text
    assert texts == {0: expected_text("short"), 1: expected_text("short")}


def test_seed_reproducible_at_temperature_1(client):
    def run(seed):
        return client.completions.create(model=MODEL, prompt=CASES["medium"]["prompt"], temperature=1.0, seed=seed,
                                         max_tokens=20, extra_body={"ignore_eos": True}).choices[0].text  # fmt: skip

    a, b, c = run(7), run(7), run(8)
    assert a == b
    assert a != c, "seeds 7 and 8 gave the same 20 sampled tokens"


def test_seed_reproducible_stream_vs_non_stream(client):
    kw = dict(model=MODEL, messages=chat_messages("chat_multiturn"), temperature=0.8, top_p=0.95, seed=99, max_tokens=16,
              extra_body={"ignore_eos": True})  # fmt: skip
    a = client.chat.completions.create(**kw).choices[0].message.content
    b = "".join(ch.delta.content or "" for c in client.chat.completions.create(stream=True, **kw) for ch in c.choices)
    assert a == b


def test_top_k_1_is_greedy(client):
    r = client.completions.create(model=MODEL, prompt=CASES["medium"]["prompt"], temperature=1.0, seed=5, max_tokens=N_GREEDY,
                                  extra_body={"ignore_eos": True, "top_k": 1})  # fmt: skip
    assert r.choices[0].text == expected_text("medium")


def test_sampling_params_accepted(client):
    r = client.chat.completions.create(
        model=MODEL, messages=chat_messages("chat_user"), temperature=0.7, top_p=0.9, seed=3, max_tokens=10,
        frequency_penalty=0.5, presence_penalty=0.5,
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": True},
    )  # fmt: skip
    assert r.usage.completion_tokens == 10
    assert r.choices[0].finish_reason == "length"


def test_presence_penalty_changes_greedy(client):
    # chat_system's greedy run loops on the same few tokens: a strong presence penalty must break it.
    r = client.chat.completions.create(model=MODEL, messages=chat_messages("chat_system"), presence_penalty=2.0, **GREEDY)
    assert r.choices[0].message.content != expected_text("chat_system")


def test_stop_string_straddling_tokens(client):
    probe = REF["stop_probe"]
    c = CASES[probe["case"]]
    r = client.completions.create(model=MODEL, prompt=c["prompt"], stop=[probe["stop"]], **GREEDY)
    assert r.choices[0].text == probe["expected_text"]
    assert r.choices[0].finish_reason == "stop"


def test_stop_string_straddling_tokens_stream(client):
    probe = REF["stop_probe"]
    c = CASES[probe["case"]]
    stream = client.completions.create(model=MODEL, prompt=c["prompt"], stop=["never-occurs", probe["stop"]], stream=True, **GREEDY)
    text, finish = "", []
    for chunk in stream:
        for ch in chunk.choices:
            text += ch.text
            if ch.finish_reason:
                finish.append(ch.finish_reason)
    assert text == probe["expected_text"]
    assert finish == ["stop"]


def test_stop_string_chat(client):
    name = "chat_user"
    pieces = CASES[name]["greedy_pieces"]
    stop = pieces[10] + pieces[11]  # a two-token stop string
    full = expected_text(name)
    want = full[: full.find(stop)]
    r = client.chat.completions.create(model=MODEL, messages=chat_messages(name), stop=stop, **GREEDY)
    assert r.choices[0].message.content == want
    assert r.choices[0].finish_reason == "stop"


def test_stop_string_at_start_gives_empty_text(client):
    name = "short"
    stop = CASES[name]["greedy_pieces"][0]
    assert stop.strip(), stop
    r = client.completions.create(model=MODEL, prompt=CASES[name]["prompt"], stop=stop, **GREEDY)
    assert r.choices[0].text == ""
    assert r.choices[0].finish_reason == "stop"


def test_n_at_limit(client):
    r = client.completions.create(model=MODEL, prompt=CASES["short"]["prompt"], n=16, temperature=1.0, seed=1,
                                  max_tokens=2, extra_body={"ignore_eos": True})  # fmt: skip
    assert sorted(ch.index for ch in r.choices) == list(range(16))
    assert r.usage.completion_tokens == 32


def test_logprobs_chat(client):
    name = "chat_user"
    r = client.chat.completions.create(
        model=MODEL, messages=chat_messages(name), logprobs=True, top_logprobs=3, temperature=0, max_tokens=8,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    content = r.choices[0].logprobs.content
    assert [t.token for t in content] == CASES[name]["greedy_pieces"][:8]
    for t in content:
        assert t.logprob <= 0.0
        assert t.bytes == list(t.token.encode("utf-8"))
        assert len(t.top_logprobs) == 3
        lps = [x.logprob for x in t.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        assert sum(2.718281828459045**lp for lp in lps) <= 1.0 + 1e-4
        # Greedy: the chosen token is the most likely one.
        assert t.top_logprobs[0].token == t.token
        assert abs(t.top_logprobs[0].logprob - t.logprob) < 1e-4


def test_logprobs_chat_without_top(client):
    r = client.chat.completions.create(model=MODEL, messages=chat_messages("chat_user"), logprobs=True, temperature=0,
                                       max_tokens=4, extra_body={"ignore_eos": True})  # fmt: skip
    content = r.choices[0].logprobs.content
    assert len(content) == 4
    assert all(t.top_logprobs == [] for t in content)


def test_no_logprobs_by_default(client):
    r = client.chat.completions.create(model=MODEL, messages=chat_messages("chat_user"), temperature=0, max_tokens=2)
    assert r.choices[0].logprobs is None


def test_logprobs_completion(client):
    name = "medium"
    r = client.completions.create(model=MODEL, prompt=CASES[name]["prompt"], logprobs=2, temperature=0, max_tokens=8,
                                  extra_body={"ignore_eos": True})  # fmt: skip
    lp = r.choices[0].logprobs
    assert lp.tokens == CASES[name]["greedy_pieces"][:8]
    assert len(lp.token_logprobs) == 8 and all(x <= 0.0 for x in lp.token_logprobs)
    assert len(lp.top_logprobs) == 8
    for tok, chosen, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert 1 <= len(top) <= 2
        assert max(top.values()) == pytest.approx(chosen, abs=1e-4)
        assert top[tok] == pytest.approx(chosen, abs=1e-4)
    offsets = [0]
    for t in lp.tokens[:-1]:
        offsets.append(offsets[-1] + len(t))
    assert lp.text_offset == offsets


def test_logprobs_stream(client):
    name = "chat_user"
    stream = client.chat.completions.create(model=MODEL, messages=chat_messages(name), logprobs=True, top_logprobs=2,
                                            stream=True, temperature=0, max_tokens=6, extra_body={"ignore_eos": True})  # fmt: skip
    tokens = []
    for chunk in stream:
        for ch in chunk.choices:
            if ch.logprobs and ch.logprobs.content:
                tokens += [t.token for t in ch.logprobs.content]
    assert tokens == CASES[name]["greedy_pieces"][:6]


# --------------------------------------------------------------------------------------------- prefix cache


def test_cached_tokens_on_repeated_prefix(server, client):
    c = CASES["long"]
    assert len(c["prompt_ids"]) >= 48
    assert requests.post(server.url("/flush_cache"), timeout=HTTP_TIMEOUT).status_code == 200
    before = server.metrics()
    first = client.completions.create(model=MODEL, prompt=c["prompt"], temperature=0, max_tokens=2)
    second = client.completions.create(model=MODEL, prompt=c["prompt"], temperature=0, max_tokens=2)
    cached_first = first.usage.prompt_tokens_details.cached_tokens
    cached_second = second.usage.prompt_tokens_details.cached_tokens
    assert cached_first == 0
    assert 16 <= cached_second < len(c["prompt_ids"]), cached_second
    assert second.choices[0].text == first.choices[0].text == "".join(c["greedy_pieces"][:2])
    after = server.metrics()
    assert after["quanta_cached_prompt_tokens_total"] - before["quanta_cached_prompt_tokens_total"] >= cached_second


def test_cached_tokens_shared_prefix_chat(server, client):
    # Same system + first user turn, a different last turn: the common prefix comes from the cache.
    msgs = chat_messages("chat_multiturn")
    client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=1)
    other = msgs[:-1] + [{"role": "user", "content": "Tell me a short story about a fox."}]
    r = client.chat.completions.create(model=MODEL, messages=other, temperature=0, max_tokens=1)
    assert r.usage.prompt_tokens_details.cached_tokens >= 16


def test_repeated_long_prefix_is_cached_and_first_token_comes_sooner():
    """A prompt that fills most of a 1024-token context: the second time, its prefix comes from the cache."""
    s = Server([], context=1024)
    try:
        client = OpenAI(base_url=s.url("/v1"), api_key="unused", max_retries=0, timeout=HTTP_TIMEOUT)
        words = CASES["long"]["prompt"].split()
        prompt = " ".join(words * (1000 // len(post(s, "/tokenize", {"content": CASES["long"]["prompt"]}).json()["tokens"])))
        n_prompt = len(post(s, "/tokenize", {"content": prompt}).json()["tokens"])
        assert 700 < n_prompt < 1020, n_prompt

        def ttft() -> tuple[float, int]:
            t0 = time.perf_counter()
            stream = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=2, stream=True,
                                               stream_options={"include_usage": True})  # fmt: skip
            first = None
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].text:
                    first = time.perf_counter() - t0
                if chunk.usage is not None:
                    cached = chunk.usage.prompt_tokens_details.cached_tokens
            assert first is not None
            return first, cached

        cold, warm = [], []
        for _ in range(3):
            assert requests.post(s.url("/flush_cache"), timeout=HTTP_TIMEOUT).status_code == 200
            t, cached = ttft()
            assert cached == 0
            cold.append(t)
            t, cached = ttft()
            assert cached >= n_prompt - 16, (cached, n_prompt)  # all full blocks but the last token's
            warm.append(t)
        cold.sort(), warm.sort()
        print(f"time to first token: uncached {cold}, cached {warm}")
        assert warm[1] < cold[1], f"median time to first token: cached {warm[1]:.4f}s, uncached {cold[1]:.4f}s"
    finally:
        s.stop()


# --------------------------------------------------------------------------------------------- SGLang native


@pytest.mark.parametrize("name", ["short", "long"])
def test_generate_text(server, name):
    c = CASES[name]
    r = post(server, "/generate", {"text": c["prompt"],
                                   "sampling_params": {"temperature": 0, "max_new_tokens": N_GREEDY, "ignore_eos": True}})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == expected_text(name)
    assert body["output_ids"] == c["greedy_ids"]
    meta = body["meta_info"]
    assert meta["prompt_tokens"] == len(c["prompt_ids"])
    assert meta["completion_tokens"] == N_GREEDY
    assert meta["finish_reason"]["type"] == "length"
    assert "cached_tokens" in meta and "id" in meta


@pytest.mark.parametrize("name", CHAT_CASES)
def test_generate_input_ids(server, name):
    c = CASES[name]
    r = post(server, "/generate", {"input_ids": c["prompt_ids"],
                                   "sampling_params": {"temperature": 0, "max_new_tokens": N_GREEDY, "ignore_eos": True}})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["output_ids"] == c["greedy_ids"]
    assert r.json()["text"] == expected_text(name)


def test_generate_stops_at_eos(server):
    c = CASES["chat_eos"]
    r = post(server, "/generate", {"input_ids": c["prompt_ids"], "sampling_params": {"temperature": 0, "max_new_tokens": N_GREEDY}})
    body = r.json()
    assert body["text"] == c["until_eos_text"]
    assert body["output_ids"][: c["eos_at"]] == c["until_eos_ids"]
    assert body["meta_info"]["finish_reason"]["type"] == "stop"


def test_generate_stream(server):
    c = CASES["medium"]
    r = requests.post(server.url("/generate"), timeout=HTTP_TIMEOUT, stream=True,
                      json={"text": c["prompt"], "stream": True,
                            "sampling_params": {"temperature": 0, "max_new_tokens": N_GREEDY, "ignore_eos": True}})  # fmt: skip
    events = sse_events(r)
    assert events
    # SGLang streams the text so far in each chunk.
    texts = [e["text"] for e in events]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    assert texts[-1] == expected_text("medium")
    assert events[-1]["output_ids"] == c["greedy_ids"]
    assert events[-1]["meta_info"]["finish_reason"]["type"] == "length"
    assert all(e["meta_info"]["finish_reason"] is None for e in events[:-1])


def test_generate_stop_string(server):
    probe = REF["stop_probe"]
    c = CASES[probe["case"]]
    r = post(server, "/generate", {"text": c["prompt"], "sampling_params": {
        "temperature": 0, "max_new_tokens": N_GREEDY, "ignore_eos": True, "stop": probe["stop"]}})  # fmt: skip
    body = r.json()
    assert body["text"] == probe["expected_text"]
    assert body["meta_info"]["finish_reason"] == {"type": "stop", "matched": probe["stop"]}


def test_generate_seed_reproducible(server):
    body = {"input_ids": CASES["short"]["prompt_ids"],
            "sampling_params": {"temperature": 1.0, "max_new_tokens": 16, "ignore_eos": True, "seed": 11}}  # fmt: skip
    a, b = post(server, "/generate", body).json(), post(server, "/generate", body).json()
    assert a["output_ids"] == b["output_ids"] and len(a["output_ids"]) == 16


@pytest.mark.parametrize("name", COMPLETION_CASES)
def test_tokenize_matches_reference(server, name):
    c = CASES[name]
    r = post(server, "/tokenize", {"content": c["prompt"]})
    assert r.status_code == 200, r.text
    assert r.json()["tokens"] == c["prompt_ids"]


def test_tokenize_chat_rendering_parses_special_tokens(server):
    c = CASES["chat_multiturn"]
    r = post(server, "/tokenize", {"content": c["rendered"]})
    assert r.json()["tokens"] == c["prompt_ids"]


@pytest.mark.parametrize("name", [*COMPLETION_CASES, *CHAT_CASES])
def test_detokenize_matches_reference(server, name):
    c = CASES[name]
    r = post(server, "/detokenize", {"tokens": c["greedy_ids"]})
    assert r.status_code == 200, r.text
    # tokenizer.decode(ids) as in transformers: special tokens kept.
    assert r.json()["content"] == c["greedy_text"]


def test_tokenize_detokenize_round_trip(server):
    for name in COMPLETION_CASES:
        text = CASES[name]["prompt"]
        ids = post(server, "/tokenize", {"content": text}).json()["tokens"]
        assert post(server, "/detokenize", {"tokens": ids}).json()["content"] == text


def test_flush_cache(server, client):
    client.completions.create(model=MODEL, prompt=CASES["long"]["prompt"], temperature=0, max_tokens=1)
    assert server.metrics()["quanta_prefix_cache_blocks"] > 0
    r = requests.post(server.url("/flush_cache"), timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while server.metrics()["quanta_prefix_cache_blocks"] > 0:
        assert time.monotonic() < deadline, "the prefix cache still holds blocks 10 s after /flush_cache"
        time.sleep(0.05)
    # Nothing is cached any more.
    r = client.completions.create(model=MODEL, prompt=CASES["long"]["prompt"], temperature=0, max_tokens=1)
    assert r.usage.prompt_tokens_details.cached_tokens == 0


EXPECTED_METRICS = [
    "quanta_num_running_reqs",
    "quanta_num_queue_reqs",
    "quanta_kv_blocks_total",
    "quanta_kv_blocks_used",
    "quanta_kv_usage",
    "quanta_prefix_cache_blocks",
    "quanta_prompt_tokens_total",
    "quanta_cached_prompt_tokens_total",
    "quanta_prefix_cache_hit_rate",
    "quanta_generation_tokens_total",
    "quanta_preemptions_total",
    "quanta_requests_total",
    "quanta_requests_failed_total",
    "quanta_time_to_first_token_seconds",
    "quanta_inter_token_latency_seconds",
    "quanta_e2e_request_latency_seconds",
]


def test_metrics(server, client):
    client.completions.create(model=MODEL, prompt=CASES["short"]["prompt"], temperature=0, max_tokens=2)
    r = requests.get(server.url("/metrics"), timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    for name in EXPECTED_METRICS:
        assert re.search(rf"^# TYPE {name} (gauge|counter|histogram)$", text, re.M), name
    m = server.metrics()
    assert m["quanta_kv_blocks_total"] > 0
    assert m["quanta_requests_total"] >= 1
    assert m["quanta_generation_tokens_total"] >= 2
    assert m['quanta_e2e_request_latency_seconds_bucket{le="+Inf"}'] == m["quanta_e2e_request_latency_seconds_count"] >= 1
    # Every sample line is `name[{labels}] number`.
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? \S+', line), line


# --------------------------------------------------------------------------------------------- request log

LOG_FIELDS = ["event", "id", "path", "status", "n", "prompt_tokens", "cached_tokens", "completion_tokens", "ttft_ms",
              "total_ms", "decode_tps", "finish_reason", "error"]  # fmt: skip


def check_timings(entry: dict) -> None:
    assert 0 <= entry["ttft_ms"] <= entry["total_ms"], entry
    assert entry["decode_tps"] > 0, entry


def test_request_log_completion(server, client):
    c = CASES["long"]
    r = client.completions.create(model=MODEL, prompt=c["prompt"], **GREEDY)
    e = server.request_log_entry(lambda e: e["id"] == r.id)
    assert list(e) == LOG_FIELDS
    assert e["path"] == "/v1/completions" and e["status"] == 200 and e["n"] == 1
    assert e["prompt_tokens"] == r.usage.prompt_tokens == len(c["prompt_ids"])
    assert e["cached_tokens"] == r.usage.prompt_tokens_details.cached_tokens
    assert e["completion_tokens"] == r.usage.completion_tokens == N_GREEDY
    assert e["finish_reason"] == "length" and e["error"] is None
    check_timings(e)


def test_request_log_stream_chat_n2(server, client):
    name = "chat_user"
    stream = client.chat.completions.create(model=MODEL, messages=chat_messages(name), n=2, stream=True,
                                            stream_options={"include_usage": True}, **GREEDY)  # fmt: skip
    chunks = list(stream)
    e = server.request_log_entry(lambda e: e["id"] == chunks[0].id)
    assert e["path"] == "/v1/chat/completions" and e["status"] == 200 and e["n"] == 2
    assert e["prompt_tokens"] == len(CASES[name]["prompt_ids"])
    assert e["completion_tokens"] == chunks[-1].usage.completion_tokens == 2 * N_GREEDY
    assert e["finish_reason"] == "length"
    check_timings(e)


def test_request_log_generate_stops_at_eos(server):
    c = CASES["chat_eos"]
    body = post(server, "/generate", {"input_ids": c["prompt_ids"], "sampling_params": {"temperature": 0, "max_new_tokens": N_GREEDY}}).json()
    e = server.request_log_entry(lambda e: e["id"] == body["meta_info"]["id"])
    assert e["path"] == "/generate" and e["status"] == 200
    assert e["prompt_tokens"] == len(c["prompt_ids"])
    assert e["completion_tokens"] == body["meta_info"]["completion_tokens"] == len(body["output_ids"])
    assert e["finish_reason"] == "stop"


def test_request_log_error(server):
    name = "no-such-model-" + os.urandom(4).hex()
    err = assert_error(post(server, "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "hi"}]}), 404)
    e = server.request_log_entry(lambda e: name in (e["error"] or ""))
    assert e["status"] == 404 and e["path"] == "/v1/chat/completions"
    assert e["error"] == err["message"]
    assert e["id"].startswith("chatcmpl-")
    assert e["completion_tokens"] == 0 and e["ttft_ms"] is None and e["finish_reason"] is None


def test_log_level_warning_drops_request_lines():
    s = Server(["--log-level", "warning"])
    try:
        r = post(s, "/v1/completions", {"prompt": CASES["short"]["prompt"], "max_tokens": 2})
        assert r.status_code == 200, r.text
        assert_error(post(s, "/v1/completions", {"prompt": "hi", "max_tokens": 0}), 400)
        time.sleep(0.2)
        assert s.request_log() == []
    finally:
        s.stop()


def serve_refused(*args: str) -> str:
    """Runs `quanta serve` with arguments it must refuse; returns its one error line."""
    binary = os.environ.get("QUANTA_BINARY", str(REPO / "build" / "quanta"))
    p = subprocess.run([binary, "serve", *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quanta: error:"), p.stderr
    return lines[0]


def test_bad_log_level_is_refused():
    err = serve_refused("--model-path", str(FIXTURE), "--log-level", "verbose")
    assert "--log-level" in err and "verbose" in err, err


@pytest.mark.parametrize("args, says", [
    (["--device", "npu"], ["--device", "npu", "CPU"]),
    # 4 heads; the MoE fixture is refused first for its experts' width (32)
    (["--tp-size", "3"], ["--tp-size", "moe_intermediate_size (32) is not a multiple of 3" if "moe" in FIXTURE.name
                          else "num_attention_heads (4) is not a multiple of 3"]),
    (["--attention-backend", "ascend"], ["--attention-backend", "not supported"]),
    (["--modle-path", "x"], ["--modle-path", "did you mean '--model-path'"]),
    (["--max-concurrent-requests", "0"], ["--max-concurrent-requests"]),
])  # fmt: skip
def test_serve_flags_refused_with_reason(args, says):
    err = serve_refused("--model-path", str(FIXTURE), *args)
    for s in says:
        assert s in err, err


# --------------------------------------------------------------------------------------------- concurrency


def test_concurrent_greedy_matches_one_at_a_time(server, client):
    """16 greedy requests at once (completions, chats and /generate) give exactly the reference."""
    names = [c["name"] for c in REF["cases"]]
    jobs = [(names[i % len(names)], i % 3) for i in range(16)]

    def run(job):
        name, how = job
        c = CASES[name]
        if how == 2:
            r = post(server, "/generate", {"input_ids": c["prompt_ids"],
                                           "sampling_params": {"temperature": 0, "max_new_tokens": N_GREEDY, "ignore_eos": True}})  # fmt: skip
            return r.json()["text"]
        if c["kind"] == "completion" or how == 0:
            return client.completions.create(model=MODEL, prompt=c["prompt_ids"], **GREEDY).choices[0].text
        return client.chat.completions.create(model=MODEL, messages=c["messages"], **GREEDY).choices[0].message.content

    barrier = threading.Barrier(len(jobs))

    def synced(job):
        barrier.wait(timeout=30)
        return run(job)

    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as ex:
        results = list(ex.map(synced, jobs))
    for (name, _), got in zip(jobs, results):
        assert got == expected_text(name), name
    # And one at a time, the same.
    for job in jobs[:4]:
        assert run(job) == expected_text(job[0])


def test_too_many_concurrent_requests_503():
    """Over --max-concurrent-requests, a request gets 503 at once; a stream holds its place until it ends."""
    s = Server(["--max-concurrent-requests", "1"])
    try:
        c = CASES["short"]
        # A long stream with bulky chunks (16 choices, 20 logprobs each): still running after its first event.
        body = json.dumps({"model": MODEL, "prompt": c["prompt_ids"], "max_tokens": CONTEXT - len(c["prompt_ids"]), "n": 16,
                           "logprobs": 20, "temperature": 1.0, "ignore_eos": True, "stream": True}).encode()  # fmt: skip
        with socket.create_connection(("127.0.0.1", s.port), timeout=HTTP_TIMEOUT) as sock:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
            seen = b""
            while b"data: " not in seen:
                chunk = sock.recv(4096)
                assert chunk, seen
                seen += chunk
            assert seen.startswith(b"HTTP/1.1 200"), seen[:200]
            r = post(s, "/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 1})
            err = assert_error(r, 503)
            assert err["type"] == "service_unavailable"
            assert r.headers.get("Retry-After") == "1"
            # Health and metrics are not generation requests: still answered.
            assert requests.get(s.url("/health"), timeout=HTTP_TIMEOUT).status_code == 200
            assert s.metrics()["quanta_requests_failed_total"] >= 1
            while b"data: [DONE]" not in seen[-64:]:  # read the stream to its end
                chunk = sock.recv(1 << 16)
                assert chunk, "the stream ended without [DONE]"
                seen += chunk
        # The stream is over: its place is free again.
        deadline, refused = time.monotonic() + 10, 1
        while (r := post(s, "/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 1})).status_code == 503:
            assert time.monotonic() < deadline, "still 503 after the only other request ended"
            refused += 1
            time.sleep(0.05)
        assert r.status_code == 200, r.text
        # Requests racing for the single place: each is served or refused with 503, nothing else.
        barrier = threading.Barrier(8)

        def racer(_):
            barrier.wait(timeout=30)
            return post(s, "/v1/completions", {"model": MODEL, "prompt": c["prompt_ids"], "n": 16, "max_tokens": 64,
                                               "temperature": 1.0, "ignore_eos": True}).status_code  # fmt: skip

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            statuses = list(ex.map(racer, range(8)))
        assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
        assert [e["status"] for e in s.request_log()].count(503) == refused + statuses.count(503)
    finally:
        s.stop()


def kv_in_use(server: Server) -> float:
    m = server.metrics()
    return m["quanta_kv_blocks_used"] - m["quanta_prefix_cache_blocks"]


def wait_kv_baseline(server: Server, baseline: float, timeout: float = 15.0) -> dict:
    """Waits until nothing runs or waits and the KV in use (outside the prefix cache) is back at baseline."""
    deadline = time.monotonic() + timeout
    while True:
        m = server.metrics()
        used = m["quanta_kv_blocks_used"] - m["quanta_prefix_cache_blocks"]
        if m["quanta_num_running_reqs"] == 0 and m["quanta_num_queue_reqs"] == 0 and used == baseline:
            return m
        assert time.monotonic() < deadline, f"KV not back at baseline {baseline} after a disconnect: {m}"
        time.sleep(0.02)


def wait_idle(server: Server, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        m = server.metrics()
        if m["quanta_num_running_reqs"] == 0 and m["quanta_num_queue_reqs"] == 0:
            return m
        assert time.monotonic() < deadline, f"the server is not idle after {timeout}s: {m}"
        time.sleep(0.05)


def test_client_disconnect_mid_stream_frees_kv(server):
    wait_idle(server)
    baseline = kv_in_use(server)
    before = server.metrics()["quanta_generation_tokens_total"]
    logged_before = len(server.request_log())
    c = CASES["short"]
    max_tokens = CONTEXT - len(c["prompt_ids"])
    body = json.dumps({"model": MODEL, "prompt": c["prompt"], "max_tokens": max_tokens, "temperature": 0,
                       "ignore_eos": True, "stream": True, "n": 4}).encode()  # fmt: skip
    for _ in range(3):
        # Raw HTTP: read the first event of the stream, then hang up.
        with socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT) as sock:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
            seen = b""
            while b"data: " not in seen:
                chunk = sock.recv(4096)
                assert chunk, f"the server closed the stream early: {seen!r}"
                seen += chunk
            assert seen.startswith(b"HTTP/1.1 200"), seen[:200]
    m = wait_kv_baseline(server, baseline)
    generated = m["quanta_generation_tokens_total"] - before
    assert generated < 3 * 4 * max_tokens, "the disconnected streams were generated to the end"
    # Each is logged once; the aborted ones say so.
    deadline = time.monotonic() + 10
    while len(entries := server.request_log()[logged_before:]) < 3:
        assert time.monotonic() < deadline, f"3 requests, {len(entries)} log lines: {entries}"
        time.sleep(0.05)
    assert len(entries) == 3, entries
    assert all(e["n"] == 4 and e["status"] == 200 and e["prompt_tokens"] == len(c["prompt_ids"]) for e in entries), entries
    aborted = [e for e in entries if e["finish_reason"] == "abort"]
    assert aborted, entries
    for e in aborted:
        assert "client" in e["error"], e
        assert e["completion_tokens"] < 4 * max_tokens
    # The server still serves.
    assert post(server, "/generate", {"input_ids": c["prompt_ids"], "sampling_params": {
        "temperature": 0, "max_new_tokens": N_GREEDY, "ignore_eos": True}}).json()["output_ids"] == c["greedy_ids"]  # fmt: skip


@pytest.fixture(scope="module")
def slow_server():
    """The default model (Gemma 3 270M, ~20 tokens/s on one thread): the tiny fixture
    generates thousands of tokens a second, too fast to hang up on mid-answer."""
    if not DEFAULT_MODEL.is_file():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/fetch-default-model.sh (scripts/test.sh does)")
    s = Server([], model=DEFAULT_MODEL)
    yield s
    s.stop()


def test_default_model_chats_with_its_builtin_template(slow_server):
    # The default GGUF carries no chat template: quanta picks its family's (Gemma's turn markers are in
    # its vocabulary), says so, and chats; the prompt is Gemma's format, BOS first.
    info = requests.get(slow_server.url("/get_model_info"), timeout=HTTP_TIMEOUT).json()
    assert info["chat_template"] == "built-in gemma (the model has none)"
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    r = post(slow_server, "/v1/chat/completions", {"model": MODEL, "messages": messages, "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["choices"][0]["message"]["content"].strip()
    rendered = "<bos><start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
    ids = post(slow_server, "/tokenize", {"content": rendered}).json()["tokens"]
    assert ids[0] == 2 and ids.count(2) == 1  # one BOS, as a special token
    assert out["usage"]["prompt_tokens"] == len(ids)
    chunks = [line for line in requests.post(slow_server.url("/v1/chat/completions"), stream=True, timeout=HTTP_TIMEOUT,
                                             json={"model": MODEL, "messages": messages, "max_tokens": 4,
                                                   "temperature": 0, "stream": True}).iter_lines() if line]
    assert chunks[-1] == b"data: [DONE]" and len(chunks) >= 3


@pytest.mark.parametrize("path", ["/v1/completions", "/generate"])
def test_client_disconnect_non_streamed_frees_kv(slow_server, path):
    # A non-streamed request sends nothing until the end, so the server must watch
    # the connection itself: hang up while it generates, and it stops.
    server = slow_server
    wait_idle(server)
    baseline = kv_in_use(server)
    before = server.metrics()["quanta_generation_tokens_total"]
    logged_before = len(server.request_log())
    max_tokens = 200
    if path == "/generate":
        payload = {"input_ids": [2, 9259, 3324, 496, 990], "sampling_params": {
            "temperature": 0, "max_new_tokens": max_tokens, "ignore_eos": True}}  # fmt: skip
        n = 1
    else:
        payload = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": max_tokens, "temperature": 0,
                   "ignore_eos": True, "n": 2}  # fmt: skip
        n = 2
    body = json.dumps(payload).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT) as sock:
        sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
        deadline = time.monotonic() + 30
        while server.metrics()["quanta_generation_tokens_total"] - before < 4:  # it is generating
            assert time.monotonic() < deadline, "the request never started generating"
            time.sleep(0.02)
    m = wait_kv_baseline(server, baseline)
    generated = m["quanta_generation_tokens_total"] - before
    assert generated < n * max_tokens / 2, f"{generated} tokens: the request ran on after the hang-up"
    deadline = time.monotonic() + 10
    while len(entries := server.request_log()[logged_before:]) < 1:
        assert time.monotonic() < deadline, "no log line for the aborted request"
        time.sleep(0.05)
    assert len(entries) == 1, entries
    e = entries[0]
    assert e["status"] == 499 and e["finish_reason"] == "abort" and "client" in e["error"], e
    assert e["completion_tokens"] < n * max_tokens / 2, e
    # The server still serves.
    r = post(server, "/generate", {"input_ids": [2, 9259], "sampling_params": {"max_new_tokens": 2}})
    assert len(r.json()["output_ids"]) == 2


def test_kv_back_at_baseline_after_requests(server, client):
    wait_idle(server)
    baseline = kv_in_use(server)
    for name in ("short", "chat_user"):
        c = CASES[name]
        post(server, "/generate", {"input_ids": c["prompt_ids"], "sampling_params": {"temperature": 0, "max_new_tokens": 8}})
    wait_idle(server)
    assert kv_in_use(server) == baseline


# --------------------------------------------------------------------------------------------- errors


BAD_BODIES = {
    # name: (path, body, param or None)
    "completion_no_prompt": ("/v1/completions", {"model": MODEL, "max_tokens": 4}, "prompt"),
    "chat_no_messages": ("/v1/chat/completions", {"model": MODEL}, "messages"),
    "chat_empty_messages": ("/v1/chat/completions", {"model": MODEL, "messages": []}, "messages"),
    "chat_messages_not_list": ("/v1/chat/completions", {"model": MODEL, "messages": "hi"}, "messages"),
    "chat_message_without_role": ("/v1/chat/completions", {"model": MODEL, "messages": [{"content": "hi"}]}, "messages"),
    "temperature_string": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
    "max_tokens_string": ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": "10"}, "max_tokens"),
    "max_tokens_float": ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 2.5}, "max_tokens"),
    "stream_string": ("/v1/completions", {"model": MODEL, "prompt": "hi", "stream": "yes"}, "stream"),
    "n_float": ("/v1/completions", {"model": MODEL, "prompt": "hi", "n": 1.5}, "n"),
    "stop_number": ("/v1/completions", {"model": MODEL, "prompt": "hi", "stop": 3}, "stop"),
    "stop_list_of_numbers": ("/v1/completions", {"model": MODEL, "prompt": "hi", "stop": [1, 2]}, "stop"),
    "prompt_number": ("/v1/completions", {"model": MODEL, "prompt": 42}, "prompt"),
    "prompt_empty_list": ("/v1/completions", {"model": MODEL, "prompt": []}, "prompt"),
    "seed_string": ("/v1/completions", {"model": MODEL, "prompt": "hi", "seed": "x"}, "seed"),
    "stream_options_not_object": ("/v1/completions", {"model": MODEL, "prompt": "hi", "stream": True, "stream_options": 1}, "stream_options"),
    "max_tokens_zero": ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 0}, "max_tokens"),
    "max_tokens_negative": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}, "max_tokens"),
    "max_completion_tokens_zero": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 0}, "max_completion_tokens"),
    "max_tokens_over_context": ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 100000}, "max_tokens"),
    "max_tokens_just_over_room": ("/v1/completions", {"model": MODEL, "prompt": CASES["short"]["prompt_ids"], "max_tokens": CONTEXT - len(CASES["short"]["prompt_ids"]) + 1}, "max_tokens"),
    "n_zero": ("/v1/completions", {"model": MODEL, "prompt": "hi", "n": 0}, "n"),
    "n_over_limit": ("/v1/completions", {"model": MODEL, "prompt": "hi", "n": 1000}, "n"),
    "temperature_negative": ("/v1/completions", {"model": MODEL, "prompt": "hi", "temperature": -1}, None),
    "top_p_zero": ("/v1/completions", {"model": MODEL, "prompt": "hi", "top_p": 0}, None),
    "top_p_over_one": ("/v1/completions", {"model": MODEL, "prompt": "hi", "top_p": 1.5}, None),
    "top_logprobs_over_20": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    "top_logprobs_negative": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    "logprobs_negative": ("/v1/completions", {"model": MODEL, "prompt": "hi", "logprobs": -1}, "logprobs"),
    "logprobs_over_20": ("/v1/completions", {"model": MODEL, "prompt": "hi", "logprobs": 21}, "logprobs"),
    "token_id_out_of_vocab": ("/v1/completions", {"model": MODEL, "prompt": [1, 2, 99999]}, None),
    "token_id_negative": ("/v1/completions", {"model": MODEL, "prompt": [1, -5]}, None),
    "response_format_unknown_type": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "xml"}}, "response_format.type"),
    "response_format_schema_not_enforceable": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"if": {}}}}}, "response_format.json_schema.schema"),
    "body_is_list": ("/v1/completions", [{"model": MODEL, "prompt": "hi"}], None),
    "generate_no_prompt": ("/generate", {"sampling_params": {"max_new_tokens": 4}}, None),
    "generate_sampling_params_not_object": ("/generate", {"text": "hi", "sampling_params": 3}, "sampling_params"),
    "generate_input_ids_strings": ("/generate", {"input_ids": ["a", "b"]}, "input_ids"),
    "generate_max_new_tokens_zero": ("/generate", {"text": "hi", "sampling_params": {"max_new_tokens": 0}}, None),
    "detokenize_not_list": ("/detokenize", {"tokens": "1 2"}, "tokens"),
    "detokenize_out_of_vocab": ("/detokenize", {"tokens": [1, 100000]}, "tokens"),
    "tokenize_content_number": ("/tokenize", {"content": 5}, None),
    # Integers past 32 (or 64) bits: refused, not truncated (issue #16).
    "max_tokens_2_pow_63": ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 2**63}, "max_tokens"),
    "max_tokens_2_pow_64_minus_1": ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 2**64 - 1}, "max_tokens"),
    "n_10_pow_9": ("/v1/completions", {"model": MODEL, "prompt": "hi", "n": 10**9}, "n"),
    "n_2_pow_32_plus_1": ("/v1/completions", {"model": MODEL, "prompt": "hi", "n": 2**32 + 1}, "n"),
    "top_logprobs_2_pow_32": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 2**32}, "top_logprobs"),
    "logprobs_2_pow_32_plus_1": ("/v1/completions", {"model": MODEL, "prompt": "hi", "logprobs": 2**32 + 1}, "logprobs"),
    "prompt_token_id_2_pow_32_plus_1": ("/v1/completions", {"model": MODEL, "prompt": [1, 2**32 + 1]}, "prompt"),
    "input_ids_2_pow_32_plus_2": ("/generate", {"input_ids": [1, 2**32 + 2]}, "input_ids"),
    "stop_token_ids_2_pow_32_plus_1": ("/v1/completions", {"model": MODEL, "prompt": "hi", "stop_token_ids": [2**32 + 1]}, "stop_token_ids"),
    "detokenize_2_pow_32_plus_1": ("/detokenize", {"tokens": [2**32 + 1]}, "tokens"),
    "max_new_tokens_2_pow_63": ("/generate", {"text": "hi", "sampling_params": {"max_new_tokens": 2**63}}, "max_new_tokens"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_request_400(server, case):
    path, body, param = BAD_BODIES[case]
    err = assert_error(post(server, path, body), 400, param)
    assert err["type"] == "invalid_request_error"
    assert err["code"] == 400


def test_stream_request_error_is_json_not_sse(server):
    r = post(server, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                                              "stream": True, "max_tokens": 0})  # fmt: skip
    assert_error(r, 400, "max_tokens")
    assert_error(post(server, "/generate", {"text": "hi", "stream": True, "sampling_params": {"temperature": -2}}), 400)


def test_too_many_stop_strings_400(server):
    stops = [f"stop{i}" for i in range(17)]
    assert_error(post(server, "/v1/completions", {"model": MODEL, "prompt": "hi", "stop": stops}), 400, "stop")


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "/generate", "/tokenize"])
def test_malformed_json_400(server, path):
    for data in (b'{"model": "tiny-chat", "prompt": "hi"', b"not json", b"", b'{"a": 1} trailing'):
        assert_error(post_raw(server, path, data), 400)


def test_deeply_nested_json_400_and_server_keeps_serving(server):
    """Bodies nesting 100000 levels (200 KB) in messages, tools or chat_template_kwargs, or a million in
    sampling_params, overflowed the stack and killed the server (issue #16): now a 400 naming the limit."""
    deep = "[" * 100000 + "]" * 100000
    user = '[{"role": "user", "content": "hi"}]'
    bodies = [
        ("/v1/chat/completions", '{"messages": ' + deep + "}"),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": ' + deep + "}]}"),
        ("/v1/chat/completions", '{"messages": ' + user + ', "tools": ' + deep + "}"),
        ("/v1/chat/completions", '{"messages": ' + user + ', "chat_template_kwargs": {"x": ' + deep + "}}"),
        ("/v1/completions", '{"prompt": "hi", "stop": ' + deep + "}"),
        ("/generate", '{"text": "hi", "sampling_params": ' + "[" * 1000000 + "]" * 1000000 + "}"),
        ("/tokenize", '{"content": "hi", "x": ' + "{\"a\": " * 100000 + "1" + "}" * 100000 + "}"),
    ]
    for path, data in bodies:
        err = assert_error(post_raw(server, path, data.encode()), 400)
        assert "256" in err["message"], err
        assert server.proc.poll() is None, server.log_tail()
    # At the limit it is an ordinary body.
    at_limit = "[" * 255 + "]" * 255  # 256 levels with the body object
    r = post_raw(server, "/tokenize", ('{"content": "hi", "x": ' + at_limit + "}").encode())
    assert r.status_code == 200, r.text
    r = post(server, "/v1/completions", {"prompt": CASES["short"]["prompt"], "temperature": 0, "max_tokens": 2})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "/generate"])
def test_invalid_utf8_body_400(server, path):
    data = b'{"model": "tiny-chat", "prompt": "caf\xe9 \xff", "messages": [{"role": "user", "content": "\xc3("}], "text": "\xed\xa0\x80"}'
    assert_error(post_raw(server, path, data), 400)


def test_lone_surrogate_escape_400(server):
    assert_error(post_raw(server, "/v1/completions", b'{"model": "tiny-chat", "prompt": "a\\ud800b", "max_tokens": 1}'), 400)


def test_model_field_optional(server):
    r = post(server, "/v1/completions", {"prompt": CASES["short"]["prompt"], "temperature": 0, "max_tokens": N_GREEDY,
                                         "ignore_eos": True})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == expected_text("short")
    assert r.json()["model"] == MODEL


def test_unknown_model_404(server, client):
    assert_error(post(server, "/v1/completions", {"model": "gpt-4o", "prompt": "hi", "max_tokens": 2}), 404, "model")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_prompt_longer_than_context_400(server, client):
    words = " ".join(CASES["long"]["prompt"].split() * 8)  # several hundred tokens > CONTEXT
    n = len(post(server, "/tokenize", {"content": words}).json()["tokens"])
    assert n > CONTEXT
    assert_error(post(server, "/v1/completions", {"model": MODEL, "prompt": words, "max_tokens": 1}), 400)
    assert_error(post(server, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": words}], "max_tokens": 1}), 400)
    assert_error(post(server, "/v1/completions", {"model": MODEL, "prompt": [5] * (CONTEXT + 1), "max_tokens": 1}), 400)
    assert_error(post(server, "/generate", {"text": words, "sampling_params": {"max_new_tokens": 1}}), 400)
    # Exactly the context: no room for one new token.
    assert_error(post(server, "/v1/completions", {"model": MODEL, "prompt": [5] * CONTEXT, "max_tokens": 1}), 400)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt=words, max_tokens=1)


def test_prompt_filling_context_but_one_is_served(server):
    r = post(server, "/v1/completions", {"model": MODEL, "prompt": [5] * (CONTEXT - 1), "max_tokens": 1, "temperature": 0})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 1


def test_body_over_size_limit_413(server):
    big = b'{"model": "tiny-chat", "prompt": "' + b"a" * (9 << 20) + b'"}'
    try:
        r = post_raw(server, "/v1/completions", big)
    except requests.ConnectionError as e:  # pragma: no cover - reported as a failure with the reason
        pytest.fail(f"the server dropped the connection instead of answering 413: {e}")
    assert_error(r, 413)


def test_openai_client_errors_are_typed(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=0)
    assert e.value.status_code == 400
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no such type"}}},
        )  # fmt: skip


def test_errors_are_counted_in_metrics(server):
    before = server.metrics()["quanta_requests_failed_total"]
    post(server, "/v1/completions", {"model": MODEL})
    assert server.metrics()["quanta_requests_failed_total"] >= before + 1


def test_still_serves_after_errors(server, client):
    # Runs after the error tests above (pytest keeps file order): the server is alive and exact.
    assert server.proc.poll() is None
    r = client.chat.completions.create(model=MODEL, messages=chat_messages("chat_user"), **GREEDY)
    assert r.choices[0].message.content == expected_text("chat_user")
    wait_idle(server)


# --------------------------------------------------------------------------------------------- API key


def test_api_key_required(auth_server):
    for path in ("/v1/models", "/get_model_info"):
        assert_error(requests.get(auth_server.url(path), timeout=HTTP_TIMEOUT), 401)
        assert_error(requests.get(auth_server.url(path), headers={"Authorization": "Bearer wrong"}, timeout=HTTP_TIMEOUT), 401)
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    assert_error(post(auth_server, "/v1/completions", body), 401)
    assert_error(post(auth_server, "/v1/completions", body, headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(post(auth_server, "/v1/completions", body, headers={"Authorization": API_KEY}), 401)
    assert_error(post(auth_server, "/generate", {"text": "hi"}), 401)


def test_api_key_health_stays_open(auth_server):
    assert requests.get(auth_server.url("/health"), timeout=HTTP_TIMEOUT).status_code == 200


def test_api_key_accepted(auth_server):
    good = OpenAI(base_url=auth_server.url("/v1"), api_key=API_KEY, max_retries=0, timeout=HTTP_TIMEOUT)
    assert [m.id for m in good.models.list().data] == [MODEL]
    r = good.chat.completions.create(model=MODEL, messages=chat_messages("chat_user"), **GREEDY)
    assert r.choices[0].message.content == expected_text("chat_user")
    r = post(auth_server, "/generate", {"input_ids": CASES["short"]["prompt_ids"], "sampling_params": {
        "temperature": 0, "max_new_tokens": N_GREEDY, "ignore_eos": True}},
        headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
    assert r.json()["output_ids"] == CASES["short"]["greedy_ids"]


def test_api_key_wrong_with_openai_client(auth_server):
    bad = OpenAI(base_url=auth_server.url("/v1"), api_key="sk-wrong", max_retries=0, timeout=HTTP_TIMEOUT)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
