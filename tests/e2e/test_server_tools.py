"""End-to-end tests of tools and reasoning in /v1/chat/completions, on the default model.

The server runs the default model with a ChatML template that teaches Qwen's <tool_call> syntax
(tests/e2e/fixtures/templates/chatml-tools.jinja, written for these tests), so the qwen25 tool-call
parser is chosen from the template, and with --reasoning-parser deepseek-r1 (everything before
</think> is reasoning). The parsers themselves are held to every way of splitting a stream by
tests/unit/chat_output_test.cc; this suite checks what the server does with them.

Run by tests/e2e/run_server_tests.sh with QUANTA_E2E_TESTS=test_server_tools.py (CTest: server_e2e_tools).
"""

from __future__ import annotations

import json

import pytest
import requests
from openai import OpenAI

from test_server import HTTP_TIMEOUT, MODEL, REPO, WEATHER, assert_error, default_model_server, post, sse_events

TEMPLATE = REPO / "tests" / "e2e" / "fixtures" / "templates" / "chatml-tools.jinja"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def gemma():
    yield from default_model_server(["--chat-template", str(TEMPLATE), "--reasoning-parser", "deepseek-r1"], context=1024)


@pytest.fixture(scope="module")
def client(gemma):
    return OpenAI(base_url=gemma.url("/v1"), api_key="unused", max_retries=0, timeout=HTTP_TIMEOUT)


def chat(server, body):
    r = post(server, "/v1/chat/completions", {"model": MODEL, "temperature": 0, "max_tokens": 24, **body})
    assert r.status_code == 200, r.text[:500]
    return r.json()


def test_parsers_are_reported(gemma):
    info = requests.get(gemma.url("/get_server_info"), timeout=HTTP_TIMEOUT).json()
    assert info["tool_call_parser"] == "qwen25"  # detected from the template's <tool_call>
    assert info["reasoning_parser"] == "deepseek-r1"


def test_tools_reach_the_template_unless_tool_choice_is_none(gemma):
    plain = chat(gemma, {"messages": ASK, "max_tokens": 1})["usage"]["prompt_tokens"]
    with_tools = chat(gemma, {"messages": ASK, "tools": [WEATHER], "max_tokens": 1})["usage"]["prompt_tokens"]
    none = chat(gemma, {"messages": ASK, "tools": [WEATHER], "tool_choice": "none", "max_tokens": 1})["usage"]["prompt_tokens"]
    assert with_tools > plain + 20
    assert none == plain


def test_assistant_tool_call_arguments_reach_the_template_as_an_object(gemma):
    # OpenAI clients send arguments as JSON text; the template must see the object (its tojson
    # writes {"city": "Paris"}, not a quoted string).
    messages = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 20}'},
    ]
    got = chat(gemma, {"messages": messages, "max_tokens": 1})["usage"]["prompt_tokens"]
    expected = ("<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n"
                '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<|im_end|>\n'
                '<|im_start|>user\n<tool_response>\n{"temp": 20}\n</tool_response><|im_end|>\n<|im_start|>assistant\n')
    ids = post(gemma, "/tokenize", {"prompt": expected, "add_special_tokens": False}).json()["tokens"]
    assert got == len(ids)


def test_reasoning_is_split_from_the_answer(gemma, client):
    # DeepSeek-R1's prompt opens <think>, so all the model writes before </think> is reasoning.
    raw = chat(gemma, {"messages": ASK, "separate_reasoning": False})["choices"][0]["message"]
    assert "reasoning_content" not in raw
    text = raw["content"]
    assert text.strip() and "</think>" not in text
    out = chat(gemma, {"messages": ASK})["choices"][0]
    assert out["message"]["reasoning_content"] == text.strip()
    assert out["message"]["content"] == ""
    assert out["finish_reason"] == "length"
    # The official client streams the same parts.
    reasoning, content = "", ""
    for ev in client.chat.completions.create(model=MODEL, messages=ASK, temperature=0, max_tokens=24, stream=True):
        if ev.choices:
            d = ev.choices[0].delta
            reasoning += getattr(d, "reasoning_content", None) or ""
            content += d.content or ""
    assert reasoning == text.strip()
    assert content == ""


def test_answers_without_calls_keep_their_text_with_tools(gemma):
    # With tools and no call in the answer, the text comes back whole (as reasoning here), streamed
    # and not, and the finish reason is the usual one.
    body = {"messages": ASK, "tools": [WEATHER], "tool_choice": "auto", "separate_reasoning": False}
    plain = chat(gemma, body)
    msg = plain["choices"][0]["message"]
    assert "tool_calls" not in msg and "<tool_call>" not in msg["content"]
    assert plain["choices"][0]["finish_reason"] in ("length", "stop")
    r = requests.post(gemma.url("/v1/chat/completions"), stream=True, timeout=HTTP_TIMEOUT,
                      json={"model": MODEL, "temperature": 0, "max_tokens": 24, "stream": True, **body})
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in sse_events(r) if e.get("choices"))
    assert streamed == msg["content"]


@pytest.mark.parametrize("body,param", [
    ({"tools": {"x": 1}}, "tools"),
    ({"tools": [{"type": "function"}]}, "tools[0].function"),
    ({"tools": [{"type": "code", "function": {"name": "f"}}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0].function.name"),
    ({"tools": [WEATHER, {"type": "function", "function": {"name": "g", "parameters": [1]}}]}, "tools[1].function.parameters"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"separate_reasoning": 1}, "separate_reasoning"),
])
def test_bad_tools_are_a_400_naming_the_field(gemma, body, param):
    r = post(gemma, "/v1/chat/completions", {"model": MODEL, "messages": ASK, "max_tokens": 2, **body})
    assert_error(r, 400, param)
