"""End-to-end tests of structured outputs on the default model: OpenAI's response_format
(json_object, json_schema), SGLang's json_schema / regex / ebnf (in /generate's sampling_params and
beside the OpenAI fields), and tool_choice "required" / a named function.

Every constrained output is checked by an independent oracle: jsonschema (PyPI) validates the JSON,
Python's re matches the regex. Sampling is at temperature 1 with seeds, so the model wanders and the
grammar has to hold it. The grammar engine itself is held to brute force in tests/unit/grammar_test.cc.

Run by tests/e2e/run_server_tests.sh with QUANTA_E2E_TESTS=test_server_structured.py
(CTest: server_e2e_structured).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest
import requests
from openai import OpenAI

from test_server import HTTP_TIMEOUT, MODEL, REPO, WEATHER, assert_error, default_model_server, post, sse_events

TEMPLATE = REPO / "tests" / "e2e" / "fixtures" / "templates" / "chatml-tools.jinja"

# Nested, with every kind of keyword the translation covers; bounded strings and arrays so that a
# sample always ends within max_tokens (an unbounded string at temperature 1 may not).
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 16},
        "age": {"type": "integer", "minimum": 0},
        "role": {"enum": ["admin", "user", "guest"]},
        "email": {"anyOf": [{"type": "string", "pattern": "^[a-z]{1,8}@[a-z]{1,8}\\.com$"}, {"type": "null"}]},
        "address": {"$ref": "#/$defs/address"},
        "scores": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3},
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "role", "address", "scores"],
    "additionalProperties": False,
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city", "zip"],
        }
    },
}
ASK = [{"role": "user", "content": "Describe a person as JSON."}]


@pytest.fixture(scope="module")
def gemma():
    yield from default_model_server(["--chat-template", str(TEMPLATE), "--max-running-requests", "16"], context=1024)


@pytest.fixture(scope="module")
def client(gemma):
    return OpenAI(base_url=gemma.url("/v1"), api_key="unused", max_retries=0, timeout=HTTP_TIMEOUT)


def chat(server, body, timeout=HTTP_TIMEOUT):
    r = requests.post(server.url("/v1/chat/completions"), json={"model": MODEL, "max_tokens": 200, **body}, timeout=timeout)
    assert r.status_code == 200, r.text[:500]
    return r.json()


def test_json_schema_output_always_validates(gemma):
    # 50 seeded samples at temperature 1: 5 requests of n=10, run concurrently.
    body = {"messages": ASK, "temperature": 1.0, "n": 10, "max_tokens": 400,
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}}
    with ThreadPoolExecutor(5) as pool:
        # Choice i of a request draws with seed + i: seeds 100 apart give 50 different streams.
        results = list(pool.map(lambda k: chat(gemma, {**body, "seed": 100 * k}, timeout=600), range(5)))
    texts = [c["message"]["content"] for r in results for c in r["choices"]]
    assert len(texts) == 50
    for r in results:
        for c in r["choices"]:
            assert c["finish_reason"] == "stop", c
    for t in texts:
        jsonschema.validate(json.loads(t), PERSON)
    assert len(set(texts)) > 40, "temperature 1 should give different people"
    # Properties come in the schema's order (the request's key order is kept).
    first = json.loads(texts[0])
    assert list(first)[:3] == ["name", "age", "role"]


def test_json_object_and_openai_client(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=120, temperature=1.0, seed=1,
                                       response_format={"type": "json_object"})
    c = r.choices[0]
    if c.finish_reason == "stop":
        assert isinstance(json.loads(c.message.content), dict)
    else:  # cut by max_tokens: still a prefix of an object
        assert c.message.content.lstrip().startswith("{")


def test_json_schema_streamed(gemma):
    body = {"model": MODEL, "messages": ASK, "temperature": 1.0, "seed": 7, "max_tokens": 300, "stream": True,
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}}
    r = post(gemma, "/v1/chat/completions", body, stream=True)
    assert r.status_code == 200, r.text[:300]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in sse_events(r) if e["choices"])
    jsonschema.validate(json.loads(text), PERSON)


def test_regex_in_generate_matches_every_time(gemma):
    pattern = r"(Yes|No), because [a-z ]{3,20}\. Score: [1-9][0-9]?/10"
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda seed: post(gemma, "/generate", {
            "text": "Is the sky blue?", "sampling_params": {"regex": pattern, "temperature": 1.0, "seed": seed,
                                                           "max_new_tokens": 60}}).json(), range(20)))
    for o in outs:
        assert o["meta_info"]["finish_reason"]["type"] == "stop", o
        assert re.fullmatch(pattern, o["text"]), o["text"]


def test_ebnf_and_json_schema_in_generate(gemma):
    grammar = 'root ::= "The answer is " answer "."\nanswer ::= [0-9]{1,3} | "unknown"\n'
    o = post(gemma, "/generate", {"text": "What is 6 times 7?", "sampling_params": {
        "ebnf": grammar, "temperature": 1.0, "seed": 3, "max_new_tokens": 20}}).json()
    assert re.fullmatch(r"The answer is ([0-9]{1,3}|unknown)\.", o["text"]), o
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    o = post(gemma, "/generate", {"text": "Reply in JSON.", "sampling_params": {
        "json_schema": json.dumps(schema), "temperature": 0, "max_new_tokens": 40}}).json()
    jsonschema.validate(json.loads(o["text"]), schema)
    # Beside the OpenAI fields of /v1/completions too.
    r = post(gemma, "/v1/completions", {"model": MODEL, "prompt": "Count: ", "regex": "[0-9]{1,3}( [0-9]{1,3}){2}",
                                         "max_tokens": 30, "temperature": 1.0, "seed": 5}).json()
    assert re.fullmatch("[0-9]{1,3}( [0-9]{1,3}){2}", r["choices"][0]["text"]), r


TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 10}},
                                       "required": ["zone"]}}}
TOOL_ASK = [{"role": "user", "content": "Tell me a joke."}]  # nothing asks for a tool: the grammar must


def test_tool_choice_required_returns_a_call(gemma):
    r = chat(gemma, {"messages": TOOL_ASK, "tools": [WEATHER, TIME], "tool_choice": "required",
                     "temperature": 1.0, "seed": 2, "parallel_tool_calls": False})
    msg = r["choices"][0]["message"]
    assert r["choices"][0]["finish_reason"] == "tool_calls", r
    assert len(msg["tool_calls"]) == 1
    call = msg["tool_calls"][0]["function"]
    assert call["name"] in ("get_weather", "get_time")
    schema = (WEATHER if call["name"] == "get_weather" else TIME)["function"]["parameters"]
    jsonschema.validate(json.loads(call["arguments"]), schema)


def test_tool_choice_named_forces_that_function_streamed(gemma):
    body = {"model": MODEL, "messages": TOOL_ASK, "tools": [WEATHER, TIME], "max_tokens": 200, "temperature": 1.0,
            "seed": 4, "stream": True, "tool_choice": {"type": "function", "function": {"name": "get_time"}}}
    r = post(gemma, "/v1/chat/completions", body, stream=True)
    assert r.status_code == 200, r.text[:300]
    calls, finish = {}, None
    for e in sse_events(r):
        for ch in e["choices"]:
            for tc in ch["delta"].get("tool_calls") or []:
                c = calls.setdefault(tc["index"], {"name": "", "arguments": ""})
                c["name"] += tc["function"].get("name") or ""
                c["arguments"] += tc["function"].get("arguments") or ""
            finish = ch.get("finish_reason") or finish
    assert list(calls) == [0], calls  # a named function is called once
    name, args = calls[0]["name"], calls[0]["arguments"]
    assert name == "get_time"
    assert finish == "tool_calls"
    jsonschema.validate(json.loads(args), TIME["function"]["parameters"])


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", {"messages": ASK, "response_format": {"type": "yaml"}}, "response_format.type"),
    ("/v1/chat/completions", {"messages": ASK, "response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ("/v1/chat/completions", {"messages": ASK, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {"a": {"not": {}}}}}}}, "response_format.json_schema.schema"),
    ("/v1/chat/completions", {"messages": ASK, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"$ref": "#/$defs/nowhere"}}}}, "response_format.json_schema.schema"),
    ("/v1/completions", {"prompt": "hi", "regex": "(a"}, "regex"),
    ("/v1/completions", {"prompt": "hi", "regex": "(?<=a)b"}, "regex"),
    ("/v1/completions", {"prompt": "hi", "ebnf": "root ::= undefined"}, "ebnf"),
    ("/v1/completions", {"prompt": "hi", "ebnf": "root ::= root \"a\""}, "ebnf"),
    ("/v1/completions", {"prompt": "hi", "regex": "a", "ebnf": "root ::= \"a\""}, "ebnf"),
    ("/v1/completions", {"prompt": "hi", "json_schema": 5}, "json_schema"),
    ("/v1/chat/completions", {"messages": ASK, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ("/v1/chat/completions", {"messages": ASK, "tools": [WEATHER], "tool_choice": "required",
                              "response_format": {"type": "json_object"}}, "tool_choice"),
])  # fmt: skip
def test_bad_constraints_are_400_naming_the_field(gemma, path, body, param):
    r = post(gemma, path, {"model": MODEL, "max_tokens": 4, **body})
    assert_error(r, 400, param)


def test_generate_bad_regex_is_400(gemma):
    r = post(gemma, "/generate", {"text": "hi", "sampling_params": {"regex": "a{5,2}"}})
    assert_error(r, 400, "regex")


def test_metrics_count_constrained_tokens(gemma):
    m = gemma.metrics()
    assert m["quanta_grammar_tokens_total"] > 100
    assert m["quanta_grammar_seconds_total"] > 0
