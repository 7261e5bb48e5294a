"""End-to-end tests of echo/prompt log-probabilities, sampling extras and /abort_request on the default model.

Run by tests/e2e/run_server_tests.sh with QUANTA_E2E_TESTS=test_server_logprobs.py (CTest: server_e2e_logprobs).
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from openai import OpenAI

from test_server import DEFAULT_MODEL, default_model_server, HTTP_TIMEOUT, MODEL, Server, assert_error, post, sse_events

TEXT = "The quick brown fox jumps over the lazy dog. It was a sunny day in the small town"


@pytest.fixture(scope="module")
def gemma():
    yield from default_model_server([], context=512)


@pytest.fixture(scope="module")
def client(gemma):
    return OpenAI(base_url=gemma.url("/v1"), api_key="unused", max_retries=0, timeout=HTTP_TIMEOUT)


def test_echo_logprobs_max_tokens_0_score_the_prompt(gemma, client):
    ids = post(gemma, "/tokenize", {"prompt": TEXT, "add_special_tokens": True}).json()["tokens"]
    out = client.completions.create(model=MODEL, prompt=TEXT, echo=True, logprobs=1, max_tokens=0)
    c = out.choices[0]
    assert c.text == TEXT
    lp = c.logprobs
    assert len(lp.tokens) == len(ids) and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x < 0 for x in lp.token_logprobs[1:])
    assert out.usage.completion_tokens == 0
    # The same numbers from SGLang's /generate (prompt scored from position 0), and with the prompt
    # cached by the first request (the scored part must be recomputed, not taken from the cache).
    g = post(gemma, "/generate", {"input_ids": ids, "return_logprob": True, "logprob_start_len": 0,
                                  "sampling_params": {"max_new_tokens": 0}}).json()["meta_info"]
    assert [t[1] for t in g["input_token_logprobs"]] == ids
    assert g["input_token_logprobs"][0][0] is None
    for a, b in zip(lp.token_logprobs[1:], [t[0] for t in g["input_token_logprobs"][1:]]):
        assert abs(a - b) < 1e-4
    # Each prompt log-prob is the next token's under a greedy continuation of the shorter prefix.
    k = len(ids) // 2
    nxt = post(gemma, "/generate", {"input_ids": ids[:k], "return_logprob": True,
                                    "sampling_params": {"max_new_tokens": 1, "temperature": 0}}).json()["meta_info"]
    top = client.completions.create(model=MODEL, prompt=ids[:k], max_tokens=1, temperature=0, logprobs=1)
    assert abs(nxt["output_token_logprobs"][0][0] - top.choices[0].logprobs.token_logprobs[0]) < 1e-4


def test_echo_logprobs_then_generation(gemma, client):
    out = client.completions.create(model=MODEL, prompt=TEXT, echo=True, logprobs=2, max_tokens=3, temperature=0)
    c = out.choices[0]
    assert c.text.startswith(TEXT) and len(c.text) > len(TEXT)
    n_prompt = out.usage.prompt_tokens
    assert len(c.logprobs.tokens) == n_prompt + 3
    assert all(len(t) <= 2 for t in c.logprobs.top_logprobs[1:])


def test_echo_stream_starts_with_the_prompt(gemma):
    r = requests.post(gemma.url("/v1/completions"), stream=True, timeout=HTTP_TIMEOUT, json={
        "prompt": TEXT, "echo": True, "logprobs": 0, "max_tokens": 2, "temperature": 0, "stream": True})
    ev = sse_events(r)
    assert ev[0]["choices"][0]["text"].startswith(TEXT)
    assert ev[0]["choices"][0]["logprobs"]["token_logprobs"][0] is None


def test_logit_bias_forces_a_token(gemma, client):
    plain = client.completions.create(model=MODEL, prompt="Hello", max_tokens=4, temperature=0)
    forced_id = 1000
    piece = post(gemma, "/detokenize", {"tokens": [forced_id]}).json()["prompt"]
    out = client.completions.create(model=MODEL, prompt="Hello", max_tokens=4, temperature=0,
                                    logit_bias={str(forced_id): 100})
    assert out.choices[0].text == piece * 4 != plain.choices[0].text
    assert_error(post(gemma, "/v1/completions", {"prompt": "a", "logit_bias": {"1": 101}}), 400, "logit_bias")
    assert_error(post(gemma, "/v1/completions", {"prompt": "a", "logit_bias": {"x": 1}}), 400, "logit_bias")


def test_stop_token_ids_min_tokens_ignore_eos(gemma, client):
    base = post(gemma, "/generate", {"text": "Hello", "sampling_params": {"max_new_tokens": 6, "temperature": 0}}).json()
    second = base["output_ids"][1]
    stopped = post(gemma, "/generate", {"text": "Hello", "sampling_params": {
        "max_new_tokens": 6, "temperature": 0, "stop_token_ids": [second]}}).json()
    assert stopped["output_ids"] == base["output_ids"][:2]
    assert stopped["meta_info"]["finish_reason"]["type"] == "stop"
    # min_tokens bans the stop token for the first 3 outputs.
    later = post(gemma, "/generate", {"text": "Hello", "sampling_params": {
        "max_new_tokens": 6, "temperature": 0, "stop_token_ids": [second], "min_new_tokens": 3}}).json()
    assert len(later["output_ids"]) >= 3 and second not in later["output_ids"][:3]
    # EOS forced by a bias: it ends the answer unless ignore_eos.
    eos = 1
    out = client.completions.create(model=MODEL, prompt="Hi", max_tokens=5, temperature=0, logit_bias={str(eos): 100})
    assert out.choices[0].finish_reason == "stop" and out.usage.completion_tokens == 1
    out = client.completions.create(model=MODEL, prompt="Hi", max_tokens=5, temperature=0, logit_bias={str(eos): 100},
                                    extra_body={"ignore_eos": True})
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 5
    out = client.completions.create(model=MODEL, prompt="Hi", max_tokens=5, temperature=0, logit_bias={str(eos): 100},
                                    extra_body={"min_tokens": 3})
    assert out.usage.completion_tokens == 4
    assert_error(post(gemma, "/v1/completions", {"prompt": "a", "max_tokens": 2, "min_tokens": 3}), 400, "min_tokens")


def test_best_of_returns_n_best(gemma, client):
    out = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=4, n=2, best_of=4, temperature=1,
                                    seed=3, logprobs=0)
    assert [c.index for c in out.choices] == [0, 1]
    totals = [sum(c.logprobs.token_logprobs) for c in out.choices]
    assert totals[0] >= totals[1]
    assert out.usage.completion_tokens == 16  # all four candidates ran
    assert_error(post(gemma, "/v1/completions", {"prompt": "a", "n": 3, "best_of": 2}), 400, "best_of")
    assert_error(post(gemma, "/v1/completions", {"prompt": "a", "n": 1, "best_of": 2, "stream": True}), 400, "best_of")


def test_skip_special_tokens(gemma):
    ids = post(gemma, "/tokenize", {"prompt": "Hi", "add_special_tokens": True}).json()["tokens"]
    body = {"prompt": ids, "echo": True, "max_tokens": 0}
    assert "<bos>" not in post(gemma, "/v1/completions", body).json()["choices"][0]["text"]
    body["skip_special_tokens"] = False
    assert post(gemma, "/v1/completions", body).json()["choices"][0]["text"].startswith("<bos>")


def test_abort_request_ends_stream_with_abort(gemma):
    events = []

    def run():
        r = requests.post(gemma.url("/generate"), stream=True, timeout=HTTP_TIMEOUT, json={
            "text": "Tell me a long story", "rid": "story-1", "stream": True,
            "sampling_params": {"max_new_tokens": 400, "temperature": 0, "ignore_eos": True}})
        events.extend(sse_events(r))

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.5)
    r = post(gemma, "/abort_request", {"rid": "story-1"})
    assert r.status_code == 200 and r.json()["aborted"] is True
    t.join(timeout=30)
    assert events and events[-1]["meta_info"]["finish_reason"]["type"] == "abort"
    assert events[-1]["meta_info"]["id"] == "story-1"
    assert events[-1]["meta_info"]["completion_tokens"] < 400
    # The server lets go of the rid once the stream's last byte is out, which can be a moment
    # after the client has read it: an ended request stops answering to it within a second or so.
    deadline = time.time() + 5
    while post(gemma, "/abort_request", {"rid": "story-1"}).json()["aborted"] and time.time() < deadline:
        time.sleep(0.05)
    assert post(gemma, "/abort_request", {"rid": "story-1"}).json()["aborted"] is False
    assert_error(post(gemma, "/abort_request", {}), 400, "rid")


def test_models_by_id(gemma):
    r = requests.get(gemma.url(f"/v1/models/{MODEL}"), timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and r.json()["id"] == MODEL
    assert_error(requests.get(gemma.url("/v1/models/nope"), timeout=HTTP_TIMEOUT), 404, "model")


def test_a_list_of_prompts_answers_each_as_alone(gemma, client):
    prompts = ["The capital of France is", "One, two, three,", TEXT]
    alone = [client.completions.create(model=MODEL, prompt=q, max_tokens=5, temperature=0) for q in prompts]
    both = client.completions.create(model=MODEL, prompt=prompts, max_tokens=5, temperature=0, n=2)
    assert [c.index for c in both.choices] == list(range(6))
    for k, a in enumerate(alone):
        assert both.choices[2 * k].text == a.choices[0].text
        assert both.choices[2 * k + 1].text == a.choices[0].text
    assert both.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone)
    assert both.usage.completion_tokens == 2 * sum(a.usage.completion_tokens for a in alone)
    # Token-id prompts, echo with prompt log-probs (lm-eval's batched log-likelihood requests).
    ids = [post(gemma, "/tokenize", {"prompt": q, "add_special_tokens": True}).json()["tokens"] for q in prompts[:2]]
    scored = client.completions.create(model=MODEL, prompt=ids, echo=True, logprobs=0, max_tokens=0)
    for k, c in enumerate(scored.choices):
        one = client.completions.create(model=MODEL, prompt=ids[k], echo=True, logprobs=0, max_tokens=0).choices[0]
        assert c.text == one.text and c.logprobs.tokens == one.logprobs.tokens
        assert c.logprobs.token_logprobs[0] is None
        for x, y in zip(c.logprobs.token_logprobs[1:], one.logprobs.token_logprobs[1:]):
            assert abs(x - y) < 1e-4
    # Streamed: every prompt's choices arrive under their index.
    r = requests.post(gemma.url("/v1/completions"), stream=True, timeout=HTTP_TIMEOUT, json={
        "prompt": prompts[:2], "max_tokens": 5, "temperature": 0, "stream": True})
    texts = {}
    for ev in sse_events(r):
        for c in ev["choices"]:
            texts[c["index"]] = texts.get(c["index"], "") + c["text"]
    assert texts == {0: alone[0].choices[0].text, 1: alone[1].choices[0].text}


@pytest.mark.parametrize("prompt,param", [
    (["ok", 5], "prompt[1]"), (["ok", []], "prompt[1]"), (["x"] * 129, "prompt"), ([[1, 2], [-1]], "prompt[1]")])
def test_bad_prompt_lists_are_a_400_naming_the_entry(gemma, prompt, param):
    assert_error(post(gemma, "/v1/completions", {"prompt": prompt, "max_tokens": 1}), 400, param)


def test_generate_batches_and_n(gemma):
    prompts = ["The capital of France is", "One, two, three,"]
    greedy = {"max_new_tokens": 4, "temperature": 0}
    alone = [post(gemma, "/generate", {"text": q, "sampling_params": greedy}).json() for q in prompts]
    assert isinstance(alone[0], dict)
    both = post(gemma, "/generate", {"text": prompts, "sampling_params": {**greedy, "n": 2}}).json()
    assert isinstance(both, list) and len(both) == 4
    assert [o["text"] for o in both] == [alone[0]["text"]] * 2 + [alone[1]["text"]] * 2
    ids = [post(gemma, "/tokenize", {"prompt": q, "add_special_tokens": True}).json()["tokens"] for q in prompts]
    by_ids = post(gemma, "/generate", {"input_ids": ids, "sampling_params": greedy, "return_logprob": True}).json()
    assert [o["output_ids"] for o in by_ids] == [a["output_ids"] for a in alone]
    for k, o in enumerate(by_ids):  # logprob_start_len -1: each prompt's own last token
        assert o["meta_info"]["input_token_logprobs"] == [[None, ids[k][-1], None]]
    # Sampled with a seed: n streams differ from each other but repeat with the same seed.
    sampled = {"max_new_tokens": 8, "temperature": 1.0, "n": 3, "seed": 11}
    a = post(gemma, "/generate", {"text": prompts[0], "sampling_params": sampled}).json()
    b = post(gemma, "/generate", {"text": prompts[0], "sampling_params": sampled}).json()
    assert [o["text"] for o in a] == [o["text"] for o in b]
    assert len({o["text"] for o in a}) > 1
    r = requests.post(gemma.url("/generate"), stream=True, timeout=HTTP_TIMEOUT,
                      json={"text": prompts, "sampling_params": greedy, "stream": True})
    last = {}
    for ev in sse_events(r):
        last[ev["index"]] = ev["text"]
    assert last == {0: alone[0]["text"], 1: alone[1]["text"]}


@pytest.mark.parametrize("body,param", [
    ({"text": ["ok", 3]}, "text[1]"), ({"text": []}, "text"), ({"input_ids": [[1], "x"]}, "input_ids[1]"),
    ({"input_ids": [[1], []]}, "input_ids[1]"), ({"text": "ok", "sampling_params": {"n": 0}}, "n")])
def test_bad_generate_batches_are_a_400_naming_the_field(gemma, body, param):
    assert_error(post(gemma, "/generate", body), 400, param)


def test_echo_logprobs_equal_quanta_perplexitys_own(gemma, client, tmp_path):
    # The same chunks scored by `quanta perplexity --per-token` and by /v1/completions echo: each
    # scored token's log-probability agrees within 1e-4.
    binary = gemma.cmd[0]
    out = tmp_path / "per_token.json"
    text = Path(__file__).resolve().parents[1] / "golden" / "data" / "persuasion-chapter-1.txt"
    subprocess.run([binary, "perplexity", "-m", str(DEFAULT_MODEL), "-f", str(text), "-c", "64", "--chunks", "2",
                    "-t", "1", "--per-token", str(out)], check=True, capture_output=True, timeout=HTTP_TIMEOUT)
    chunks = json.loads(out.read_text())["chunks"]
    assert len(chunks) == 2
    for c in chunks:
        lp = client.completions.create(model=MODEL, prompt=c["ids"], echo=True, logprobs=0, max_tokens=0).choices[0].logprobs
        served = lp.token_logprobs[c["first_scored"]:]
        assert len(served) == len(c["logprobs"]) == 31
        for a, b in zip(served, c["logprobs"]):
            assert abs(a - b) < 1e-4, (a, b)


def test_timeout_aborts_long_generations_with_their_output():
    s = Server(["--timeout", "1"], context=2048, model=DEFAULT_MODEL)
    try:
        assert requests.get(s.url("/get_server_info"), timeout=HTTP_TIMEOUT).json()["timeout"] == 1
        long = {"prompt": "Once upon a time", "max_tokens": 1500, "ignore_eos": True, "temperature": 0}
        t0 = time.monotonic()
        out = post(s, "/v1/completions", long).json()
        assert time.monotonic() - t0 < 6
        c = out["choices"][0]
        assert c["finish_reason"] == "abort" and c["text"]
        assert 0 < out["usage"]["completion_tokens"] < 1500
        r = requests.post(s.url("/v1/completions"), stream=True, timeout=HTTP_TIMEOUT, json={**long, "stream": True})
        events = sse_events(r)
        assert events[-1]["choices"][0]["finish_reason"] == "abort"
        # Short requests are untouched, and the server goes on.
        short = post(s, "/v1/completions", {"prompt": "Hi", "max_tokens": 3, "temperature": 0}).json()
        assert short["choices"][0]["finish_reason"] == "length"
    finally:
        alive = s.proc.poll() is None
        s.stop()
    assert alive
