#!/usr/bin/env python3
"""Generates tests/Oml.Models.Tests/ChatTemplates/jinja-cases.json: small templates rendered by Python's jinja2 the way
transformers.apply_chat_template sets it up (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols,
transformers' tojson, raise_exception, strftime_now at a fixed time 2024-07-26 13:05:09), as expected outputs for the
C# renderer. Usage: python3 scripts/gen-chat-template-cases.py (needs jinja2; artifacts/tokenizers for the qwen3 cases)."""
import json, os, sys
from datetime import datetime
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.ext import Extension, loopcontrols
from jinja2 import nodes


class Generation(Extension):
    """Like transformers' AssistantTracker when no mask is requested: {% generation %} renders its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)

FIXED_NOW = datetime(2024, 7, 26, 13, 5, 9)

def make_env():
    def raise_exception(message):
        raise RuntimeError(message)
    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env

CASES = [
    # name, template, context
    ("text", "hello world", {}),
    ("trailing-newline", "a\n", {}),
    ("two-trailing-newlines", "a\n\n", {}),
    ("var", "{{ x }}|{{ y }}|{{ z }}|{{ w }}", {"x": "s", "y": 3, "z": 2.5, "w": None}),
    ("bools", "{{ true }} {{ False }} {{ none }} {{ [1, 'a', none, true] }} {{ {'k': 'v', 'n': 1} }} {{ (1,) }} {{ (1, 2) }}", {}),
    ("floats", "{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 10 / 4 }} {{ 10 // 4 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 % -3 }} {{ 1e16 }} {{ 123456789.125 }}", {}),
    ("undefined-renders-empty", "[{{ missing }}][{{ d.missing }}][{{ d['missing'] }}][{{ l[10] }}]", {"d": {}, "l": [1]}),
    ("string-escapes", "{{ 'a\\nb\\t\"c\\'' }}{{ \"\\u00e9\\x41\" }}{{ 'x' 'y' }}", {}),
    ("trim-blocks", "{% if true %}\nyes\n{% endif %}\nafter", {}),
    ("lstrip-blocks", "  {% if true %}\n  yes\n  {% endif %}\n  end", {}),
    ("lstrip-not-after-text", "x {% if true %}y{% endif %}", {}),
    ("whitespace-control", "a  \n  {%- if true -%}  \n  b  \n  {%- endif -%}  \n  c {{- ' d ' -}} e", {}),
    ("plus-modifiers", "  {%+ if true +%}\nx\n  {%+ endif %}", {}),
    ("comments", "a{# comment #}\nb  {# indented #}\nc{#- x -#}  d", {}),
    ("var-no-trim", "{{ 'a' }}\nb", {}),
    ("raw", "{% raw %}{{ not rendered }}{% endraw %}", {}),
    ("for-loop-vars", "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}:{{ x }};{% endfor %}", {"xs": ["a", "b", "c"]}),
    ("for-prev-next-cycle", "{% for x in xs %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }} {{ loop.cycle('odd', 'even') }}|{% endfor %}", {"xs": [1, 2, 3]}),
    ("for-filter", "{% for x in xs if x % 2 == 0 %}{{ x }}{{ ',' if not loop.last }}{% endfor %}", {"xs": [1, 2, 3, 4, 5, 6]}),
    ("for-else", "{% for x in xs %}{{ x }}{% else %}empty{% endfor %}", {"xs": []}),
    ("for-unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("for-dict", "{% for k in d %}{{ k }}{% endfor %}", {"d": {"x": 1, "y": 2}}),
    ("for-string", "{% for c in 'abc' %}[{{ c }}]{% endfor %}", {}),
    ("for-nested", "{% for a in [1, 2] %}{% for b in ['x', 'y'] %}{{ a }}{{ b }}{{ loop.index }} {% endfor %}{{ loop.index }}|{% endfor %}", {}),
    ("for-scope", "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}", {}),
    ("break-continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("if-elif-else", "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}other{% endif %} {% endfor %}", {}),
    ("if-scope", "{% if true %}{% set y = 5 %}{% endif %}{{ y }}", {}),
    ("namespace", "{% set ns = namespace(count=0, found=false) %}{% for x in xs %}{% if x > 1 %}{% set ns.count = ns.count + 1 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.found }}", {"xs": [1, 2, 3]}),
    ("set-block", "{% set body %}\nhi {{ name }}\n{% endset %}[{{ body }}]{% set up | upper %}x{% endset %}{{ up }}", {"name": "bob"}),
    ("set-tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}", {}),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', punct='?') }} {{ greet(name='c') }}", {}),
    ("cond-expr", "{{ 'a' if x else 'b' }} {{ 'c' if not x else 'd' }} [{{ 'e' if false }}]", {"x": True}),
    ("and-or-values", "{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ none or [] }} {{ not none }}", {}),
    ("comparisons", "{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ 'a' != 'b' }} {{ 2 >= 3 }} {{ true == 1 }}", {}),
    ("in", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in d }} {{ 'z' not in d }} {{ 3 not in [1] }}", {"d": {"k": 1}}),
    ("arith-concat", "{{ 1 + 2 * 3 - 4 }} {{ 'a' + 'b' }} {{ 'a' ~ 1 ~ none ~ missing }} {{ [1] + [2] }} {{ 'ab' * 3 }} {{ -x + 1 }} {{ (1 + 2) * 3 }}", {"x": 5}),
    ("filter-precedence", "{{ xs|length - 1 }} {{ -3|abs }} {{ 'ab'|upper ~ 'c' }}", {"xs": [1, 2, 3]}),
    ("tests", "{{ x is defined }} {{ y is undefined }} {{ n is none }} {{ s is string }} {{ d is mapping }} {{ l is sequence }} {{ s is iterable }} {{ 1 is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ t is true }} {{ f is false }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 1 is eq 1 }} {{ s is not string }} {{ n is not none }} {{ f is boolean }} {{ d is sequence }} {{ 1 is sequence }}", {"x": 1, "n": None, "s": "s", "d": {}, "l": [], "t": True, "f": False}),
    ("test-args", "{{ 2 is in [1, 2] }} {{ 3 is gt 2 }} {{ 'x' is sameas 'x' }} {{ none is sameas none }} {{ 3 is lt(2) }}", {}),
    ("filters-str", "{{ '  a b  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'Ab'|lower }}|{{ 'ab'|upper }}|{{ 'hELLO wORLD'|capitalize }}|{{ 'hello big-world (x)'|title }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 5|string }}|{{ '<a href=\"x\">&\\'</a>'|e }}|{{ '<b>'|safe }}", {}),
    ("filters-default", "{{ missing|default('d') }} {{ none|default('d') }} {{ ''|default('d', true) }} {{ 'v'|d('x') }} {{ missing|d }}", {}),
    ("filters-seq", "{{ xs|first }} {{ xs|last }} {{ xs|join(', ') }} {{ xs|length }} {{ 'héllo'|length }} {{ d|length }} {{ xs|reverse|list }} {{ 'abc'|reverse }} {{ 'ab'|list }} {{ xs|sort }} {{ ['b', 'A', 'c']|sort }} {{ xs|sort(reverse=true)|join }} {{ [3, 1, 3]|unique|list }} {{ xs|sum }} {{ xs|min }} {{ xs|max }}", {"xs": [3, 1, 2], "d": {"a": 1}}),
    ("filters-num", "{{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ '1.5'|float }} {{ 2|float }} {{ 2.5|round }} {{ 3.14159|round(2) }} {{ 2.1|round(0, 'ceil') }} {{ -5|abs }}", {}),
    ("filters-items", "{% for k, v in d|items %}{{ k }}:{{ v }} {% endfor %}{% for k, v in d|dictsort %}{{ k }}{% endfor %}{{ missing|items|list }}", {"d": {"z": 1, "a": 2}}),
    ("filters-select", "{{ users|selectattr('active')|map(attribute='name')|join(',') }} {{ users|rejectattr('active')|map(attribute='name')|list }} {{ users|selectattr('role', 'equalto', 'admin')|map(attribute='name')|first }} {{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3, 4]|reject('odd')|list }} {{ ['a', 'B']|map('upper')|list }} {{ users|map(attribute='age', default=0)|list }} {{ [none, 1, '']|select|list }}", {"users": [{"name": "ann", "active": True, "role": "admin", "age": 3}, {"name": "bob", "active": False, "role": "user"}, {"name": "cy", "active": True, "role": "user"}]}),
    ("filter-indent", "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent('> ', blank=true) }}", {}),
    ("tojson", "{{ d|tojson }}\n{{ d|tojson(indent=2) }}\n{{ [1, 'é', none, true, 1.5, {'a': []}, {}]|tojson }}\n{{ 'a\"b\\\\c\\n\\u0001'|tojson }}\n{{ d|tojson(sort_keys=true) }}\n{{ d|tojson(separators=(',', ':')) }}\n{{ 'é😀'|tojson(ensure_ascii=true) }}\n{{ d|tojson(indent=4) }}", {"d": {"z": 1, "a": [1, 2, {"x": None}], "f": 2.0, "s": "ü"}}),
    ("str-methods", "{{ '  x  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '\\n\\na\\n'.lstrip('\\n') }}|{{ 'a\\n\\n'.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'aXa'.replace('a', 'b') }}|{{ 'ab'.upper() }}|{{ 'AB'.lower() }}|{{ 'hello wORLD'.title() }}|{{ 'abcb'.find('b') }}|{{ 'abcb'.rfind('b') }}|{{ 'abc'.find('z') }}|{{ 'abab'.count('ab') }}|{{ '-'.join(['a', 'b']) }}|{{ '{} and {name}'.format(1, name='x') }}|{{ '12'.isdigit() }}|{{ 'hello world'.capitalize() }}", {}),
    ("indexing-slicing", "{{ xs[0] }} {{ xs[-1] }} {{ xs[1:] }} {{ xs[:2] }} {{ xs[::-1] }} {{ xs[::2] }} {{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ 'hello'[-1] }} {{ xs.0 }} {{ xs[-2:] }} {{ xs[5:] }} {{ (1, 2, 3)[1:] }}", {"xs": [1, 2, 3, 4]}),
    ("attr-item", "{{ m.role }} {{ m['content'] }} {{ m.get('role') }} {{ m.get('nope', 'dflt') }} {{ m.get('nope') }} {{ m.keys()|list }} {{ m.values()|list }} {{ m['items'] }}", {"m": {"role": "user", "content": "hi", "items": "I"}}),
    ("none-attr", "[{{ n.x }}]", {"n": None}),
    ("dict-literal", "{% set d = {'a': 1, 'b': [1, 2], 3: 'x'} %}{{ d.a }} {{ d['b'][1] }} {{ d[3] }} {{ d|length }}", {}),
    ("range", "{{ range(3)|list }} {{ range(1, 4)|list }} {{ range(10, 0, -3)|list }}{% for i in range(2) %}{{ i }}{% endfor %}", {}),
    ("strftime", "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M:%S %A %B %j %p %I') }}", {}),
    ("llama31-like", "{%- if not date_string is defined %}\n    {%- set date_string = strftime_now(\"%d %b %Y\") %}\n{%- endif %}\n{{- bos_token }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{%- for message in messages %}\n    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n", {"bos_token": "<s>", "messages": [{"role": "user", "content": " hi "}], "add_generation_prompt": True}),
    ("generation-tag", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}|{% endfor %}", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
    ("loop-over-undefined", "{% for x in missing %}{{ x }}{% else %}none{% endfor %}", {}),
    ("unicode", "{{ s|length }} {{ s[1] }} {{ s[::-1] }} {{ s|upper }}", {"s": "a😀é"}),
]

def qwen3_cases():
    path = os.path.join(os.path.dirname(__file__), "..", "artifacts", "tokenizers", "qwen3", "tokenizer_config.json")
    if not os.path.exists(path):
        sys.exit("run scripts/fetch-tokenizers.sh first")
    tpl = json.load(open(path))["chat_template"]
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather \u00e9", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    msgs_tools = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "<think>\nNeed the tool.\n</think>\n\nLet me check.", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}, {"function": {"name": "get_weather", "arguments": "{\"city\": \"Lyon\"}"}}]},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "tool", "content": "{\"temp\": 23}"},
        {"role": "assistant", "content": "<think>\nGot it.\n</think>\n\nIt is 21C."},
        {"role": "user", "content": "<tool_response>x</tool_response>"},
    ]
    msgs_think = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "reasoning_content": "greet back"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nadd\n</think>\n4"},
    ]
    return [
        ("qwen3-tools", tpl, {"messages": msgs_tools, "tools": tools, "add_generation_prompt": True, "eos_token": "<|im_end|>"}),
        ("qwen3-tools-no-system", tpl, {"messages": msgs_tools[1:], "tools": tools, "add_generation_prompt": False}),
        ("qwen3-think", tpl, {"messages": msgs_think, "tools": None, "add_generation_prompt": True, "enable_thinking": False}),
        ("qwen3-think-gen", tpl, {"messages": msgs_think[:3], "tools": None, "add_generation_prompt": True, "enable_thinking": True}),
    ]

def main():
    env = make_env()
    out = []
    for name, template, ctx in CASES + qwen3_cases():
        text = env.from_string(template).render(**ctx)
        out.append({"name": name, "template": template, "context": ctx, "text": text})
    dest = os.path.join(os.path.dirname(__file__), "..", "tests", "Oml.Models.Tests", "ChatTemplates", "jinja-cases.json")
    with open(dest, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(out)} cases -> {dest}")

main()
