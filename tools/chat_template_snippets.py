"""Small templates that probe the Python and jinja2 semantics that chat templates rely on
(str() of values, json.dumps, string methods, filters, tests, scoping, whitespace control,
error messages). tools/make_chat_template_fixtures.py renders each with CTX into
tests/unit/data/chat_templates/snippets.json, and quanta's unit test renders them too."""
import random
CTX = {"s": "  Héllo, Wörld! \t\n", "n": 7, "f": 2.5, "neg": -3, "big": 12345678901234, "t": True, "no": None,
       "lst": [3, 1, 2], "strs": ["b", "A", "c", "a"], "d": {"z": 1, "a": [1, 2], "m": {"k": "v"}, "items": "I"},
       "users": [{"name": "Ann", "age": 30, "tags": ["x"]}, {"name": "bob", "age": 25}, {"name": "Cy", "age": None}],
       "empty": [], "edict": {}, "estr": "", "uni": "日本語テキスト 😀 ñ", "quote": "it's \"q\"", "ctrl": "a\x01b\x7fc\u200bd\xa0e",
       "floats": [0.1, 1e-7, 1e22, 123456789.0, -0.0, 3.0, 1.5e300, 2.220446049250313e-16],
       "nested": [[1, [2, {"a": (None)}]], {"b": [True, False]}]}
SNIPPETS = [
 "{{ s|trim }}|{{ s|length }}|{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip(' H') }}",
 "{{ s.split() }}|{{ s.split(',') }}|{{ s.split(',', 0) }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b  c'.split(' ') }}|{{ ' a b c '.split(None, 1) }}|{{ ' a b c '.rsplit(None, 1) }}",
 "{{ floats }}|{% for x in floats %}{{ x }},{% endfor %}|{{ floats|tojson }}",
 "{{ n / 2 }} {{ n // 2 }} {{ n % 3 }} {{ -n // 2 }} {{ -n % 3 }} {{ n ** 2 }} {{ 2 ** -1 }} {{ f * 2 }} {{ f // 1 }} {{ f % 1 }} {{ n + f }} {{ 10 / 4 }} {{ 1e3 }} {{ 1_000 }} {{ 0x1f }}",
 "{{ big * 1000 }} {{ neg|abs }} {{ f|round }} {{ 2.675|round(2) }} {{ 0.5|round }} {{ 1.5|round }} {{ 7|round(1) }} {{ 2.5|round(0, 'floor') }} {{ 2.1|round(0, 'ceil') }}",
 "{{ d }}|{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ d|tojson(indent='\t', sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}",
 "{{ nested }}|{{ nested|tojson }}|{{ nested|string }}|{{ nested|length }}",
 "{{ uni }}|{{ uni|length }}|{{ uni[2:5] }}|{{ uni[-1] }}|{{ uni|tojson }}|{{ uni|tojson(ensure_ascii=true) }}|{{ [uni] }}|{{ uni|upper }}|{{ uni|reverse }}",
 "{{ quote }}|{{ [quote] }}|{{ quote|tojson }}|{{ {'k': quote} }}|{{ ['a\\'b', 'a\"b', 'a\\'\"b', '\\\\'] }}",
 "{{ [ctrl] }}|{{ ctrl|tojson }}|{{ ctrl|tojson(ensure_ascii=True) }}",
 "{{ strs|sort }}|{{ strs|sort(case_sensitive=true) }}|{{ strs|sort(reverse=true) }}|{{ lst|sort }}|{{ strs|unique|list }}|{{ strs|min }}|{{ strs|max }}|{{ lst|sum }}|{{ strs|first }}|{{ strs|last }}",
 "{{ users|map(attribute='name')|list }}|{{ users|map(attribute='age', default=0)|list }}|{{ users|selectattr('age')|list|length }}|{{ users|rejectattr('age', 'none')|map(attribute='name')|join(',') }}|{{ users|sort(attribute='age,name')|map(attribute='name')|join }}|{{ users|sort(attribute='name')|map(attribute='name')|join }}",
 "{{ users|selectattr('name', 'equalto', 'bob')|first }}|{{ users|map(attribute='tags.0')|list }}|{{ users|sum(attribute='n', start=0) if false else 'x' }}|{{ lst|select('odd')|list }}|{{ lst|reject('ge', 2)|list }}|{{ strs|map('upper')|join('-') }}",
 "{% for k, v in d|dictsort %}{{ k }}:{{ v }};{% endfor %}|{% for k, v in d.items() %}{{ k }};{% endfor %}|{{ d|dictsort(reverse=true) }}|{{ {'b': 2, 'A': 1, 'a': 3}|dictsort }}|{{ {'b': 2, 'a': 1}|dictsort(by='value') }}",
 "{{ d.items }}|{{ d['items'] }}|{{ d.keys()|list }}|{{ d.values()|list }}|{{ d.get('z') }}|{{ d.get('q') }}|{{ d.get('q', 5) }}|{{ 'z' in d }}|{{ 1 in lst }}|{{ 'é' in s }}|{{ d.m.k }}|{{ d['m']['k'] }}",
 "{{ lst[0] }}{{ lst[-1] }}{{ lst[::2] }}{{ lst[::-1] }}{{ lst[1:] }}{{ lst[:-1] }}{{ lst[5:] }}{{ lst[-10:2] }}{{ 'abcdef'[1:5:2] }}{{ 'abc'[::-1] }}{{ lst[1:2:] }}",
 "{{ lst|join }}|{{ lst|join(', ') }}|{{ [1, none, true]|join('|') }}|{{ lst|list }}|{{ 'abc'|list }}|{{ d|list }}|{{ lst|reverse|list }}|{{ edict|list }}",
 "{{ no }}|{{ no|string }}|{{ no is none }}|{{ t }}|{{ t|string }}|{{ t|tojson }}|{{ no|tojson }}|{{ no|default('x') }}|{{ no|default('x', true) }}|{{ undefined_var|default('u') }}|{{ estr|default('e', true) }}",
 "{{ 'a' ~ 1 ~ none ~ true ~ 1.0 ~ [1] }}|{{ 'a' + 'b' }}|{{ [1] + [2, 3] }}|{{ (1, 2) + (3,) }}|{{ 'ab' * 2 }}|{{ [0] * 3 }}|{{ 3 * 'x' }}",
 "{{ 1 == 1.0 }} {{ 1 == true }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ none == none }} {{ {} == {} }} {{ [1] == (1,) }} {{ 'a' != 'a' }}",
 "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' or [] }} {{ not [] }} {{ not 'a' }} {{ none or none }} {{ 1 if 0 else 2 }} {{ (1 if 0) is defined }} {{ 'x' if 1 }}",
 "{{ n is odd }} {{ n is even }} {{ n is divisibleby 7 }} {{ n is number }} {{ f is float }} {{ n is integer }} {{ t is integer }} {{ t is boolean }} {{ s is string }} {{ lst is sequence }} {{ d is mapping }} {{ d is sequence }} {{ s is iterable }} {{ n is iterable }} {{ no is iterable }} {{ undefined_var is sequence }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ n is eq 7 }} {{ n is ne 7 }} {{ n is gt 3 }} {{ n is lessthan 3 }} {{ n is in lst }} {{ t is true }} {{ t is false }} {{ no is sameas none }} {{ lst is callable }}",
 "{{ 'hello world-foo(bar)'|title }}|{{ 'hELLO wORLD'|capitalize }}|{{ 'abc'|center(9) }}|{{ 'abc'|center(8) }}|{{ 'one two  three'|wordcount }}|{{ 'x'.center(6, '*') }}|{{ 'ab'.ljust(4) }}|{{ 'ab'.rjust(4, '0') }}|{{ '42'.zfill(5) }}|{{ '-4'.zfill(4) }}",
 "{{ 'a\\nb\\r\\nc\\n'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(2, blank=true) }}|{{ 'x'|indent('>> ', first=true) }}|{{ ''|indent(first=true) }}",
 "{{ '12'|int }} {{ ' 12 '|int }} {{ '1_000'|int }} {{ '12.9'|int }} {{ '-3.9'|int }} {{ 'abc'|int }} {{ 'abc'|int(7) }} {{ 3.99|int }} {{ none|int }} {{ true|int }} {{ '0x1A'|int(base=16) }} {{ '1e3'|int }} {{ '3'|float }} {{ 'x'|float }} {{ 'inf'|float }} {{ '1e5'|float }} {{ 5|float }}",
 "{{ 'Hello'.startswith('He') }} {{ 'Hello'.endswith(('x', 'lo')) }} {{ 'a-b-c'.replace('-', '+', 1) }} {{ 'abcabc'.find('c') }} {{ 'abcabc'.rfind('c') }} {{ 'abcabc'.count('bc') }} {{ 'AbC'.lower() }} {{ 'AbC'.upper() }} {{ 'ab cd'.title() }} {{ ','.join(['a', 'b']) }} {{ 'a\\nb\\n'.splitlines() }} {{ '123'.isdigit() }} {{ 'ab'.isalpha() }} {{ ' '.isspace() }} {{ 'xyz'.replace('', '-') }}",
 "{{ 'x{}y{}'.format(1, 'a') }}|{{ '{0}{1}{0}'.format('a', 'b') }}|{{ '{k}'.format(k=[1]) }}|{{ '{{}}'.format() }}",
 "{% set ns = namespace(a=1, b=[]) %}{% set ns.b = ns.b + [ns.a] %}{{ ns.b }}|{{ ns }}|{{ ns.c is defined }}|{% set x, y = 1, 2 %}{{ x }}{{ y }}|{% set t = (1, 2) %}{{ t }}|{% set one = (1,) %}{{ one }}",
 "{% for x in lst %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.cycle('a', 'b') }}{% endfor %}|{% for x in lst %}{% for y in strs %}{% if loop.first %}{{ x }}{{ loop.length }}{% endif %}{% endfor %}{% endfor %}",
 "{% for c in 'abc' %}{{ c }}{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for x in undefined_thing %}x{% else %}none{% endfor %}|{% for x in lst if x > 1 %}{{ loop.index }}/{{ loop.length }}{% endfor %}",
 "{% macro m(a, b=2, c=none) %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }}|{{ m(1, 3) }}|{{ m(1, c=4) }}|{{ m(a=5) }}|{{ m }}|{{ m is callable }}",
 "{% macro outer(x) %}[{{ caller(x) }}]{% endmacro %}{% call(v) outer(5) %}v={{ v }}{% endcall %}|{% set s | upper %}inner {{ n }}{% endset %}{{ s }}|{% filter replace('a', 'o') %}banana{% endfilter %}",
 "{% with a = 1, b = n %}{{ a + b }}{% endwith %}|{{ range(5)|list }}|{{ range(2, 10, 3)|list }}|{{ range(5, 0, -2)|list }}|{{ dict(a=1, b=2) }}|{{ dict([('x', 1)]) }}|{{ dict({'q': 1}, r=2) }}",
 "  {% if true %}\n    indented\n  {% endif %}\n  {%- if true %}\n  x  {% endif +%}\n{#- c #}\n  {# c2 #}\ny\n{% for i in lst %}\n  {{ i }}\n{% endfor %}\nend\n",
 "a {%- if true -%} b {%- endif -%} c\n{{- ' d ' -}}\n e {% if true %} f {% endif %} g\n\t{% if true %}tab{% endif %}\n",
 "{{ 'x' }}{# comment #}\n{{ 'y' }}\n{# c #}z\n  {#+ keep #}\nw",
 "{{ 'Ünïcödé ÀÉÎ ñ ß ÿ'|lower }}|{{ 'ünïcödé àéî ñ ß ÿ'|upper }}|{{ 'ελληνικά ΑΒΓ'|upper }}|{{ 'ПРИВЕТ мир'|lower }}|{{ 'straße'|title }}",
 "{{ raise_exception('boom ' ~ n) }}",
 "{{ lst.append(4) }}",
 "{{ d.pop('z') }}",
 "{{ undefined_var.attr }}",
 "{{ no.attr }}",
 "{{ lst[10].x }}",
 "{{ d.missing.x }}",
 "{{ 'a' + none }}",
 "{{ 1 + 'a' }}",
 "{{ [1] + 'a' }}",
 "{{ 'a' < 1 }}",
 "{{ n / 0 }}",
 "{{ n // 0 }}",
 "{{ none|length }}",
 "{% for x in n %}{% endfor %}",
 "{{ 'a' in 1 }}",
 "{{ 1 in 'a' }}",
 "{{ d|items|list }}{{ s|items }}",
 "{{ x|tojson }}",
 "{{ ns.x }}{% set ns = namespace() %}{% set ns.__x = 1 %}",
 "{% set a = 1 %}{% set a.b = 2 %}",
 "{% for a, b in [[1]] %}{% endfor %}",
 "{{ range(200000)|length }}",
 "{{ m(1, 2, 3) }}{% macro m(a) %}{% endmacro %}",
 "{% macro m(a) %}{% endmacro %}{{ m(1, 2, 3) }}",
 "{% macro m(a) %}{% endmacro %}{{ m(b=1) }}",
 "{{ 'abc'|batch(2)|list }}",
 "{{ [1,2]|map('nofilter')|list }}",
 "{{ [] | max }}|{{ [] | first }}|{{ undefined_var | string }}|{{ undefined_var | length }}|{{ undefined_var | list }}|{{ undefined_var | join }}|{{ undefined_var | trim }}|{{ undefined_var ~ 'x' }}|{{ undefined_var is sequence }}",
 "{{ undefined_var|int }}",
 "{{ -undefined_var }}",
 "{{ undefined_var + 1 }}",
 "{{ undefined_var() }}",
 "{{ undefined_var['k'] }}",
 "{{ s.nomethod() }}",
 "{{ lst.count(3) }}{{ lst.index(2) }}{{ (1, 2).count(1) }}",
 "{{ d.items()|length }}{{ d.keys() }}{{ d.values() }}",
 "{{ lst|map('string')|list }}|{{ lst|map('tojson')|list }}|{{ users|map(attribute='name')|map('lower')|list }}",
 "{{ 'a'|safe + '<b>' }}|{{ '<a>' + 'b'|safe }}|{{ ('x'|safe).upper() }}|{{ '<'|e }}|{{ '<'|escape|safe }}|{{ '<b>'|forceescape }}|{{ 'a&b'|safe|length }}",
 "{{ [1, 2, 3]|batch(2)|list }}",
]

# Whitespace control, literals, precedence and the idioms of real chat templates.
CTX.update({
    "messages": [{"role": "system", "content": "Sys"}, {"role": "user", "content": "Hi"},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1, "b": [1.5, "x"]}}}]},
                 {"role": "tool", "content": "42"}, {"role": "user", "content": ["part"]}],
    "tools": [{"type": "function", "function": {"name": "f", "description": "D", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "string"}}},
        "required": ["a"]}}}],
})
SNIPPETS += [
    "{{ 'x' }}\n    {% if true %}\n\tY\n    {%- endif %}\n  {{ 'z' }}\n",
    "a{{ 'x' -}}\n  {% if true %}b{% endif %}\n\n  {%+ if true %}c{% endif %}\n{# at start #}d\n   {# indented #}\ne",
    "{% for m in messages %}\n  {%- if m.role == 'user' %}\n    U:{{ m.content }}\n  {%- elif m.role == 'system' -%}\n    S:{{ m.content }}\n  {% else %}\n    O\n  {% endif %}\n{% endfor %}\n",
    "{%- macro f(x) -%}\n  [{{ x }}]\n{%- endmacro -%}\n{{ f(1) }}\n{{- f(2) }}\n  {{ f(3) -}}\n  end",
    "{{ '\\x41\\u00e9\\101\\q\\n' }}|{{ \"d\\\"q\" }}|{{ 'a' \"b\" 'c' }}|{{ 0b101 }} {{ 0o17 }} {{ 1_000_000 }} {{ 1.5e-3 }} {{ 2E3 }}",
    "{{ 1 + 2 * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ not 1 == 2 }} {{ 'a' ~ 'b'|upper }} {{ -3|abs }} {{ 10 - 2 - 3 }} {{ 2 * 3 % 4 }} {{ 7 // 2 * 2 }}",
    "{{ 'a' if false else 'b' if false else 'c' }} {{ no is not none and no is not string }} {{ (1, 2)[0] }} {{ {'a': 1}['a'] }} {{ {'a': 1}.a }} {{ [[1, 2]][0][1] }}",
    "{{ messages|selectattr('role', 'equalto', 'user')|list|length }}|{{ messages|map(attribute='role')|join('\\n') }}|{{ (messages|last).role }}|{{ messages[-1]['content'] }}|{{ messages|rejectattr('content', 'none')|list|length }}",
    "{% for m in messages %}{% if m.tool_calls %}{% for tc in m.tool_calls %}{{ tc.function.name }}({{ tc.function.arguments|tojson }}){% for k, v in tc.function.arguments|items %}{{ k }}={{ v }};{% endfor %}{% endfor %}{% endif %}{% endfor %}",
    "{% for t in tools %}{{ t|tojson(indent=4) }}\n{{ t.function.parameters.properties|dictsort }}\n{{ t['function']['parameters']['required'] }}{% endfor %}",
    "{% set ns = namespace(idx=-1) %}{% for m in messages[::-1] %}{% if ns.idx == -1 and m.role == 'user' %}{% set ns.idx = messages|length - 1 - loop.index0 %}{% endif %}{% endfor %}{{ ns.idx }}",
    "{% for m in messages %}{{ loop.index }}{% if loop.previtem %}<{{ loop.previtem.role }}{% endif %}{% if not loop.last %}>{{ loop.nextitem.role }}{% endif %};{% endfor %}",
    "{{ messages[0].content.split() }}|{{ messages[1].content.startswith('H') }}|{{ messages[3].content|int + 1 }}|{{ messages[4].content is string }}|{{ messages[4].content[0] }}",
    "{{ messages[2].content.split() }}",
    "{{ messages[4].content.strip() }}",
    "{{ messages[2].content + 'x' }}",
    "{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%d %B %Y') }}|{{ strftime_now('%A, %b %d') }}|{{ strftime_now('%H:%M:%S %j %a %p') }}|{{ strftime_now('%-d %y %%') }}",
    "{{ 'xxhixx'|trim('x') }}|{% filter indent(2) %}a\nb{% endfilter %}|{{ 'a\\tb  c'|wordcount }}|{{ 'a' < 'B' }}|{{ [3, 1, 2]|sort|first }}|{{ 'abc'|first }}{{ 'abc'|last }}|{{ {'a': 1}|length }}|{{ x|default }}|{{ none|default('d') }}",
    "{{ users|max(attribute='age') }}",
    "{{ [1, 'a']|sort }}",
    "{{ {'a': 1, 'b': 'x'}|dictsort(by='value') }}",
    "{% if x is foo %}{% endif %}ok",
    "{% if true %}{% if x is foo %}{% endif %}{% endif %}",
    "{% for x in [1] %}{{ x|nosuchfilter }}{% endfor %}",
    "{{ x is foo }}",
    "{% if x %}",
    "{% for x in y %}{% endif %}",
    "{{ 1 + }}",
    "{% set %}",
    "{% macro m(a=1, b) %}{% endmacro %}",
    "{{ 'unterminated }}",
    "{{ x.0 }}{{ lst.0 }}{{ lst.1 }}",
    "{% for a, b in d.items() %}{{ a }}{% endfor %}|{% for a in d.values() %}{{ a }}{% endfor %}",
    "{{ d.items()|list|length }}{{ d.items()|first }}{{ d.keys()|first }}",
    "{% set s = 'abc' %}{% for c in s|reverse %}{{ c }}{% endfor %}{{ s|reverse }}{{ s[::-1] == s|reverse }}",
    "{% for x in lst|batch(2) %}{{ x }}{% endfor %}|{{ lst|slice(2)|list }}|{{ [1,2,3,4,5]|batch(2, 0)|list }}",
    "{{ namespace(a=1).a }}{{ namespace({'b': 2}).b }}{% set n = namespace() %}{% set n.x = [] %}{% set n.x = n.x + [1] %}{{ n.x }}",
    "{{ none is sameas none }} {{ 1 is sameas 1 }} {{ [] is sameas [] }} {{ lst is sameas lst }} {{ 'a' is escaped }} {{ 'a'|safe is escaped }}",
    "{% set d2 = dict(d, extra=1) %}{{ d2|length }}{{ d2.extra }}{{ dict(a=1).items()|list }}",
    "{{ 'A-B c'.split('-') }}{{ 'a\\nb'.splitlines() }}{{ 'ab'.center(7, '-') }}{{ 'x'.zfill(3) }}{{ 'Hello'.swapcase() }}",
    "{{ 3 is divisibleby(3) }} {{ 4 is odd }} {{ 'abc' is lower }} {{ 'aBc' is upper }} {{ '' is lower }} {{ 5 is ge 5 }} {{ 5 is lt 6 }} {{ 'a' is in 'abc' }} {{ 'tojson' is filter }} {{ 'nope' is filter }} {{ 'odd' is test }}",
    "{% macro m() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, a=2) }}",
    "{% macro m(a) %}{{ caller(a) if caller is defined else 'no caller' }}{% endmacro %}{{ m(1) }}{% call(x) m(2) %}got {{ x }}{% endcall %}",
    "{% macro m() %}x{% endmacro %}{% call m() %}body{% endcall %}",
    "{{ [1, 2, 3]|map('int')|sum }} {{ ['1', '2']|map('int')|list }} {{ [1.5, 2.5]|map('round')|list }} {{ [[1], [2]]|map('first')|list }} {{ ['a', 'b']|map('replace', 'a', 'z')|list }}",
    "{{ lst|select('>', 1)|list }} {{ lst|reject('equalto', 3)|list }} {{ lst|select|list }} {{ [0, 1, '', 'a', none]|select|list }} {{ users|selectattr('age', 'gt', 26)|map(attribute='name')|list }}",
]


# Random expression templates for a differential test: the filters, tests, operators and methods
# below combined at random with a fixed seed, so quanta meets the odd corners (error messages of
# mismatched types, Markup arithmetic, printf-style %, signed zeros) where jinja2 does.
RANDOM_CTX = {"s": " Ab c\u00e9 ", "e": "", "n": 3, "z": 0, "f": 1.25, "g": -0.5, "t": True, "fa": False, "no": None,
              "l": [2, 1, 3], "sl": ["b", "a", "C"], "d": {"k": "v", "n": 1, "l": [1, 2]}, "ed": {}, "el": [],
              "ms": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "x": [1]}],
              "u": "ü😀"}
_ATOMS = ["s", "e", "n", "z", "f", "g", "t", "fa", "no", "l", "sl", "d", "ed", "el", "ms", "u", "undef",
          "'x'", "\"q'\"", "1", "0", "2.5", "-1", "[1, 'a']", "(1,)", "{'a': 1}", "none", "true", "ms[0]", "d.l",
          "l[1:]", "ms[1].content", "d['k']", "s.split()", "d.items()|list", "range(3)|list"]
_FILTERS = ["length", "string", "trim", "upper", "lower", "title", "capitalize", "list", "first", "last", "sort",
            "unique|list", "reverse|list", "tojson", "tojson(indent=1)", "join(',')", "default('D')",
            "default('D', true)", "int", "float", "abs", "round", "items|list", "dictsort", "map('string')|list",
            "select|list", "reject|list", "min", "max", "sum", "replace('a', 'b')", "indent(2)", "center(7)",
            "wordcount", "batch(2)|list", "safe", "e", "count", "selectattr('role')|list", "map(attribute='role')|list"]
_TESTS = ["defined", "undefined", "none", "string", "number", "mapping", "sequence", "iterable", "boolean", "integer",
          "float", "true", "false", "odd", "even", "lower", "upper", "callable", "eq 1", "in l", "sameas none"]
_BINOPS = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or"]
_METHODS = [".strip()", ".split(',')", ".upper()", ".startswith('A')", ".endswith(' ')", ".replace('c', 'C')",
            ".get('k')", ".get('zz', 5)", ".keys()|list", ".values()|list", ".count(1)", ".index(1)", ".find('c')",
            ".lstrip(' A')", ".title()"]


def random_templates(seed, count):
    rnd = random.Random(seed)

    def expr(depth=0):
        r = rnd.random()
        if depth > 2 or r < 0.3:
            return rnd.choice(_ATOMS)
        if r < 0.5:
            return f"({expr(depth + 1)})|{rnd.choice(_FILTERS)}"
        if r < 0.6:
            return f"({expr(depth + 1)}) is {'not ' if rnd.random() < 0.3 else ''}{rnd.choice(_TESTS)}"
        if r < 0.8:
            return f"({expr(depth + 1)}) {rnd.choice(_BINOPS)} ({expr(depth + 1)})"
        if r < 0.9:
            return f"({expr(depth + 1)}){rnd.choice(_METHODS)}"
        return f"({expr(depth + 1)}) if ({expr(depth + 1)}) else ({expr(depth + 1)})"

    def stmt():
        r = rnd.random()
        if r < 0.5:
            return "{{ " + expr() + " }}"
        if r < 0.7:
            return "{% for x in " + expr() + " %}[{{ x }}|{{ loop.index }}]{% else %}E{% endfor %}"
        if r < 0.85:
            return "{% if " + expr() + " %}Y{% else %}N{% endif %}"
        return "{% set v = " + expr() + " %}{{ v }}"

    return ["".join(stmt() for _ in range(rnd.randint(1, 3))) for _ in range(count)]
