#!/usr/bin/env python3
"""Renders every chat template in ../shared/data/chat-templates/ with Python's jinja2, set up
exactly as transformers 5.23.0 sets it up for apply_chat_template, against a fixed list of
conversations, and writes the results as golden fixtures for quanta's chat-template engine.

Usage (see tools/requirements-chat-templates.txt for the venv):
  /root/.cache/quanta/jinja-venv/bin/python tools/make_chat_template_fixtures.py

Writes tests/unit/data/chat_templates/:
  contexts.json      the inputs: a list of {name, messages, tools, add_generation_prompt, kwargs}
  snippets.json      small templates of tools/chat_template_snippets.py with their results
  random.json        2,000 random expression templates (random_templates there), with their results
  <template>.json    {template, sha256, cases: {context name: {output} | {error_type, error}}}
                     (template_case() below adds the few per-template inputs to each context)

The templates themselves are not copied: the tests read them from ../shared/data.

How transformers configures jinja2 (transformers/utils/chat_template_utils.py, 5.23.0,
_cached_compile_jinja_template and render_jinja_template), reproduced below:
  - ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
    extensions=[AssistantTracker, jinja2.ext.loopcontrols])
  - filters["tojson"] = json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  - globals: raise_exception(message) raises TemplateError(message); strftime_now(format) formats
    datetime.now(); dict(...) builds a dict; namespace rejects names starting with "_".
  - AssistantTracker adds a {% generation %}...{% endgeneration %} block that renders its body
    unchanged when no assistant mask is asked for.
  - render(messages=..., tools=<list or None>, documents=<list or None>,
    add_generation_prompt=<bool>, **special_tokens_map, **kwargs); messages first get their
    reasoning aliased (_alias_reasoning_fields): a message with reasoning_content, thinking or
    reasoning becomes {"thinking": r, **message, "reasoning_content": r}.
strftime_now is pinned here to PINNED_NOW so that fixtures do not depend on the day they are made;
the tests pin quanta's clock to the same instant.
"""
import copy
import hashlib
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(os.path.dirname(ROOT), "shared", "data", "chat-templates")
OUT = os.path.join(ROOT, "tests", "unit", "data", "chat_templates")
PINNED_NOW = datetime(2025, 3, 14, 9, 26, 53)

assert jinja2.__version__ == "3.1.6", jinja2.__version__


class GenerationBlock(Extension):
    # transformers' AssistantTracker with the tracker inactive: the body renders as it is.
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return PINNED_NOW.strftime(format)

    class TemplateDict:
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check_name(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"Chat templates cannot store underscore-prefixed attributes on a namespace, but got {name!r}. "
                    "Please rename the attribute."
                )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env


def alias_reasoning(messages):
    out = []
    for m in messages:
        r = next((m[k] for k in ("reasoning_content", "thinking", "reasoning") if m.get(k) is not None), None)
        if r is not None:
            m = {"thinking": r, **m, "reasoning_content": r}
        out.append(m)
    return out


def render_context(case):
    # The keyword arguments of transformers' compiled_template.render(...).
    ctx = {
        "messages": alias_reasoning(case["messages"]),
        "tools": case.get("tools"),
        "documents": case.get("documents"),
        "add_generation_prompt": case["add_generation_prompt"],
    }
    ctx.update(case.get("kwargs", {}))
    return ctx


# ---------------------------------------------------------------------------------------------
# Inputs. Tools and messages follow the OpenAI chat format that servers pass to templates.

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"}},
        "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "web_search", "description": "Search the web & return the top results (\"quoted\" <b>html</b>).",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "What to look for"},
        "max_results": {"type": "integer", "description": "How many results", "default": 5, "minimum": 1},
        "ratio": {"type": "number", "description": "A float knob", "default": 0.5},
        "filters": {"type": "array", "items": {"type": "string"}, "description": "Site filters"},
        "safe": {"type": "boolean", "description": "Safe search"},
        "options": {"type": "object", "properties": {"lang": {"type": "string"}}, "description": "Nested options"}},
        "required": ["query", "safe"]}}}
UNICODE_TOOL = {"type": "function", "function": {
    "name": "traduire", "description": "Traduit un texte — vers le 日本語 ou l'Ελληνικά. 🚀",
    "parameters": {"type": "object", "properties": {"texte": {"type": "string", "description": "Le texte à traduire"}},
                   "required": ["texte"]}}}


def call(cid, name, args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def u(text):
    return {"role": "user", "content": text}


def a(text, **extra):
    return {"role": "assistant", "content": text, **extra}


def s(text):
    return {"role": "system", "content": text}


def tool(cid, name, text):
    return {"role": "tool", "tool_call_id": cid, "name": name, "content": text}


TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}

SCENARIOS = [
    ("user_only", [u("Hello!")], None, True, {}),
    ("system_user", [s("You are a helpful assistant."), u("What is 2+2?")], None, True, {}),
    ("multi_turn", [s("You are terse."), u("Hi"), a("Hello. How can I help?"), u("Tell me a joke.")], None, True, {}),
    ("multi_turn_closed", [u("Ping"), a("Pong"), u("Again"), a("Pong again")], None, False, {}),
    ("empty_content", [s(""), u(""), a(""), u("")], None, True, {}),
    ("unicode", [s("Réponds en français, s'il te plaît."), u("Привет, 世界! 🌍 café naïve — “quotes” ½ \u00a0nbsp"),
                 a("こんにちは 👋 Ελληνικά ÄÖÜ ß"), u("emoji: 👩‍👩‍👧 and ✓")], None, True, {}),
    ("special_chars", [s("  Leading and trailing spaces  \n\n"),
                       u("Quotes ' \" and backslash \\ and <tag> & {{ braces }} {% tag %}\ttab\r\nCRLF\n"),
                       a("\n\nAnswer with newlines\n\n"), u("{\"json\": [1, 2]}")], None, True, {}),
    ("tool_call_dict_args", [s("You can call tools."), u("What's the weather in Paris?"),
                             a("", tool_calls=[call("cAll00001", "get_weather", {"city": "Paris", "unit": "celsius"})]),
                             tool("cAll00001", "get_weather", "{\"temperature\": 21, \"sky\": \"clear\"}"),
                             a("It is 21 °C and clear in Paris.")], [WEATHER], False, {}),
    ("tool_call_string_args", [u("Weather in Tokyo?"),
                               a("", tool_calls=[call("cAll00009", "get_weather", "{\"city\": \"Tokyo\"}")]),
                               tool("cAll00009", "get_weather", "sunny, 18C")], [WEATHER], True, {}),
    ("parallel_tool_calls", [u("Weather in Paris and Berlin, and search news."),
                             a("Let me check.", tool_calls=[call("cAll0000a", "get_weather", {"city": "Paris"}),
                                                            call("cAll0000b", "get_weather", {"city": "Berlin", "unit": "fahrenheit"}),
                                                            call("cAll0000c", "web_search", {"query": "news", "safe": True})]),
                             tool("cAll0000a", "get_weather", "20"), tool("cAll0000b", "get_weather", "68"),
                             tool("cAll0000c", "web_search", "[\"headline one\", \"headline two\"]")],
     [WEATHER, SEARCH], True, {}),
    ("tool_call_none_content", [s("Use tools when useful."), u("Search for quanta"),
                                a(None, tool_calls=[call("cAll0000d", "web_search", {"query": "quanta", "safe": False})]),
                                tool("cAll0000d", "web_search", "No results."), a("Nothing found."), u("Thanks")],
     [SEARCH], True, {}),
    ("tool_args_numbers", [u("Run a complex search"),
                           a("", tool_calls=[call("cAll0000n", "web_search", {
                               "query": "naïve café ☕", "max_results": 3, "ratio": 0.1, "tiny": 1e-07, "big": 1e+20,
                               "whole": 100.0, "neg": -2.5, "safe": True, "none": None, "filters": ["a.com", "b.org"],
                               "options": {"lang": "en", "depth": [1, [2, 3]], "empty": {}, "list": []}})]),
                           tool("cAll0000n", "web_search", "done")], [SEARCH], False, {}),
    ("tools_no_calls", [s("System prompt with tools."), u("Just chat, no tools needed.")],
     [WEATHER, SEARCH, UNICODE_TOOL], True, {}),
    ("reasoning_content", [u("What is 17*3?"), a("51", reasoning_content="17*3 = 51, simple."), u("And 17*4?")],
     None, True, {"enable_thinking": True}),
    ("reasoning_last_turn", [u("Think about it."), a("Done thinking.", reasoning_content="Step 1.\nStep 2.")],
     None, False, {"enable_thinking": True}),
    ("think_tags_in_content", [u("Q1"), a("<think>\nLet me think.\n</think>\n\nAnswer one."), u("Q2")], None, True, {}),
    ("thinking_disabled", [s("Be brief."), u("Hi there")], None, True, {"enable_thinking": False}),
    ("final_assistant", [u("Write a haiku."), a("Autumn moonlight—")], None, False, {}),
    ("consecutive_users", [u("First part."), u("Second part."), a("Got both.")], None, True, {}),
    ("system_only", [s("Only a system message.")], None, True, {}),
    ("long_conversation", [s("Count with me.")] + [m for i in range(1, 7) for m in (u(f"Say {i}"), a(f"{i}"))] + [u("Next")],
     None, True, {}),
    ("content_parts", [u([{"type": "text", "text": "Describe "}, {"type": "text", "text": "this text."}]),
                       a("It is text.")], None, True, {}),
    ("tool_result_mapping", [u("Weather?"), a(None, tool_calls=[call("cAll000t1", "get_weather", {"city": "Oslo"})]),
                             {"role": "tool", "tool_call_id": "cAll000t1", "content": {"temperature": -3, "unit": "C"}}],
     [WEATHER], True, {}),
    ("starts_with_assistant", [a("Welcome! Ask me anything."), u("Who are you?")], None, True, {}),
    ("developer_role", [{"role": "developer", "content": "Follow the developer."}, u("Hello dev")], None, True,
     {"reasoning_effort": "high"}),
    ("extra_kwargs", [s("Custom date."), u("What is the date?")], [WEATHER], True,
     {"date_string": "01 Jan 2030", "builtin_tools": ["brave_search", "wolfram_alpha"], "enable_thinking": True,
      "reasoning_effort": "low", "custom_flag": 7}),
    ("thinking_with_tool_call", [u("Weather in Rome?"),
                                 a("", reasoning_content="Need the weather tool.",
                                   tool_calls=[call("cAll000r1", "get_weather", {"city": "Rome"})]),
                                 tool("cAll000r1", "get_weather", "25"), a("25 degrees.", reasoning_content="Report it.")],
     [WEATHER], False, {"enable_thinking": True}),
    ("documents", [u("Summarize the documents.")], None, True, {}),
    ("empty_messages", [], None, True, {}),
]
DOCUMENTS = [{"title": "Doc A", "text": "Alpha text."}, {"title": "Doc B", "text": "Beta — text 2."}]


# Templates that need inputs the common cases do not give: Fireworks' reads `functions` (a JSON
# string) and `datetime`; the "tool_use" variants iterate `tools` unconditionally.
PER_TEMPLATE_KWARGS = {
    "fireworks-ai-llama-3-firefunction-v2.jinja": {
        "functions": json.dumps([WEATHER["function"], SEARCH["function"]], indent=2), "datetime": "2025-03-14"},
}
DEFAULT_TOOLS_IF_NONE = ("tool_use",)


def template_case(fname, case):
    case = dict(case)
    case["kwargs"] = {**case["kwargs"], **PER_TEMPLATE_KWARGS.get(fname, {})}
    if case["tools"] is None and any(tag in fname for tag in DEFAULT_TOOLS_IF_NONE):
        case["tools"] = [WEATHER]
    return case


def build_cases():
    cases = []
    for name, messages, tools, agp, kwargs in SCENARIOS:
        case = {"name": name, "messages": messages, "tools": tools, "add_generation_prompt": agp,
                "kwargs": {**TOKENS, **kwargs}}
        if name == "documents":
            case["documents"] = DOCUMENTS
        cases.append(case)
    # The same conversations with add_generation_prompt flipped, for the first few.
    for base in list(cases[:8]):
        cases.append({**base, "name": base["name"] + "+flip_gen", "add_generation_prompt": not base["add_generation_prompt"]})
    return cases


def render_snippets(env):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from chat_template_snippets import CTX, RANDOM_CTX, SNIPPETS, random_templates

    for name, ctx, templates in (("snippets", CTX, SNIPPETS), ("random", RANDOM_CTX, random_templates(2025, 2000))):
        cases = []
        for src in templates:
            try:
                # A fresh copy each time: jinja2's indent filter extends a list given to it in place.
                result = {"output": env.from_string(src).render(**copy.deepcopy(ctx))}
            except Exception as e:  # noqa: BLE001 - the exception is the expected result
                result = {"error_type": type(e).__name__, "error": str(e)}
            if " at 0x" in result.get("output", ""):
                continue  # prints a Python object address
            cases.append({"template": src, "result": result})
        with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
            json.dump({"context": ctx, "cases": cases}, f, ensure_ascii=False, indent=0)
            f.write("\n")


def main():
    if not os.path.isdir(TEMPLATES):
        sys.exit(f"no templates at {TEMPLATES}")
    os.makedirs(OUT, exist_ok=True)
    cases = build_cases()
    with open(os.path.join(OUT, "contexts.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    env = make_env()
    render_snippets(env)
    summary = []
    for fname in sorted(os.listdir(TEMPLATES)):
        if not fname.endswith(".jinja"):
            continue
        src = open(os.path.join(TEMPLATES, fname), encoding="utf-8").read()
        result = {"template": fname, "sha256": hashlib.sha256(src.encode()).hexdigest(),
                  "extra_kwargs": PER_TEMPLATE_KWARGS.get(fname, {}),
                  "tools_if_none": [WEATHER] if any(t in fname for t in DEFAULT_TOOLS_IF_NONE) else None,
                  "cases": {}}
        try:
            tmpl = env.from_string(src)
            compile_error = None
        except jinja2.exceptions.TemplateError as e:
            compile_error = e
        n_ok = 0
        for case in cases:
            if compile_error is not None:
                out = {"error_type": type(compile_error).__name__, "error": str(compile_error)}
            else:
                try:
                    out = {"output": tmpl.render(**copy.deepcopy(render_context(template_case(fname, case))))}
                    n_ok += 1
                except Exception as e:  # noqa: BLE001 - any exception is an expected outcome to record
                    out = {"error_type": type(e).__name__, "error": str(e)}
            result["cases"][case["name"]] = out
        with open(os.path.join(OUT, fname[: -len(".jinja")] + ".json"), "w", encoding="utf-8") as f:
            json.dump(result, f, ensure_ascii=False, indent=1)
            f.write("\n")
        summary.append(f"{fname}: {n_ok}/{len(cases)} rendered")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
