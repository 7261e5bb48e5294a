"""The request parsers under mutated requests (issue #16): valid bodies of every generation endpoint,
mutated at random (values swapped for other types, huge or negative numbers, long strings, deep nesting,
keys dropped or added, NaN that is not JSON), sent to the real server on the tiny fixture. Every answer
must be a 200 or a 4xx with an OpenAI-style error, never a 5xx or a dropped connection, and afterwards
the server must still answer exactly. Seeded: a failure names the seed and the body that caused it.
"""

from __future__ import annotations

import copy
import json
import random

import pytest
import requests

from test_server import CASES, HTTP_TIMEOUT, MODEL, N_GREEDY, Server, expected_text, post

SEEDS = [
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "seed": 1,
                         "stop": ["\n"], "logprobs": 2, "echo": True, "n": 2, "logit_bias": {"5": 3}}),
    ("/v1/completions", {"model": MODEL, "prompt": [[1, 2, 3], "two"], "max_tokens": 4, "stream": True,
                         "stream_options": {"include_usage": True}, "regex": "[a-z]{1,5}"}),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                              "logprobs": True, "top_logprobs": 3, "response_format": {"type": "json_object"}}),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "system", "content": "be brief"},
                                                           {"role": "user", "content": "hi"}],
                              "max_completion_tokens": 6, "stream": True, "min_tokens": 2, "stop_token_ids": [3],
                              "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
                                  "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}}),
    ("/generate", {"text": "hi", "sampling_params": {"max_new_tokens": 8, "temperature": 0, "n": 2, "ebnf": 'root ::= "a"+'},
                   "return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": 2, "rid": "r1"}),
    ("/generate", {"input_ids": [[1, 2], [3, 4]], "sampling_params": {"max_new_tokens": 4, "json_schema": '{"type": "boolean"}'},
                   "stream": True}),
    ("/tokenize", {"model": MODEL, "prompt": "hello", "add_special_tokens": True}),
    ("/detokenize", {"model": MODEL, "tokens": [1, 2, 3]}),
    ("/abort_request", {"rid": "nothing"}),
]  # fmt: skip


def random_value(rng: random.Random, depth: int = 0):
    pick = rng.randrange(12)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, -1, 1, 2**31, 2**32 + 1, 2**63, -(2**63) - 1, 10**30])
    if pick == 3:
        return rng.choice([0.5, -1e308, 1e-320, 3.0])
    if pick == 4:
        return "x" * rng.choice([0, 1, 1000, 100000])
    if pick == 5:
        return rng.choice(["\u0000", "\U0001F600", "<|im_end|>", "{{ 7*7 }}", "%s%n", "../../etc/passwd"])
    if pick == 6:
        nest = rng.choice([2, 50, 300])
        return json.loads("[" * nest + "]" * nest)
    if pick == 7 and depth < 3:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick == 8 and depth < 3:
        return {rng.choice(["type", "role", "content", "name", "schema", "x"]): random_value(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    if pick == 9:
        return [rng.randrange(-5, 300000) for _ in range(rng.randrange(1, 6))]
    if pick == 10:
        return rng.choice(["(a", "root ::= x", '{"type": "strin"}', "[", "a{99999}"])
    return rng.randrange(-3, 70)


def mutate(rng: random.Random, v):
    """One random change somewhere inside v (a dict or list), in place; returns v or its replacement."""
    if isinstance(v, dict) and v:
        key = rng.choice(list(v))
        r = rng.random()
        if r < 0.2:
            del v[key]
        elif r < 0.3:
            v[rng.choice(["n", "best_of", "tools", "tool_choice", "top_k", "min_p", "ignore_eos", "chat_template_kwargs",
                          "separate_reasoning", "response_format", "json_schema", "regex", "ebnf", "sampling_params"])] = random_value(rng)
        elif r < 0.6 and isinstance(v[key], (dict, list)):
            v[key] = mutate(rng, v[key])
        else:
            v[key] = random_value(rng)
        return v
    if isinstance(v, list) and v:
        i = rng.randrange(len(v))
        if rng.random() < 0.5 and isinstance(v[i], (dict, list)):
            v[i] = mutate(rng, v[i])
        else:
            v[i] = random_value(rng)
        return v
    return random_value(rng)


@pytest.fixture(scope="module")
def server():
    s = Server(["--max-running-requests", "8", "--timeout", "20"])
    yield s
    alive = s.proc.poll() is None
    tail = s.log_tail()
    s.stop()
    assert alive, f"the server died under mutated requests\n{tail}"


@pytest.mark.parametrize("seed", range(4))
def test_mutated_requests_get_200_or_a_4xx(server, seed):
    rng = random.Random(seed)
    for i in range(400):
        path, body = rng.choice(SEEDS)
        body = copy.deepcopy(body)
        for _ in range(rng.randint(1, 3)):
            body = mutate(rng, body)
        raw = json.dumps(body, allow_nan=True)
        if rng.random() < 0.05:
            raw = raw.replace("0.5", "NaN")  # not JSON
        try:
            r = requests.post(server.url(path), data=raw.encode(), headers={"Content-Type": "application/json"},
                              timeout=HTTP_TIMEOUT)
        except requests.RequestException as e:
            pytest.fail(f"seed {seed}, request {i}: {path} {raw[:300]}: {type(e).__name__}: {e}")
        where = f"seed {seed}, request {i}: {path} {raw[:300]} -> {r.status_code} {r.text[:300]}"
        assert r.status_code == 200 or 400 <= r.status_code < 500, where
        if r.status_code != 200:
            err = r.json()["error"]
            assert isinstance(err["message"], str) and err["message"], where
    assert server.proc.poll() is None


def test_still_exact_after_the_mutations(server):
    name = "short"
    r = post(server, "/generate", {"input_ids": CASES[name]["prompt_ids"],
                                   "sampling_params": {"temperature": 0, "max_new_tokens": N_GREEDY, "ignore_eos": True}})
    assert r.status_code == 200, r.text
    assert r.json()["output_ids"] == CASES[name]["greedy_ids"]
    assert r.json()["text"] == expected_text(name)
