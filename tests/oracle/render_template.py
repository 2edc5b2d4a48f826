#!/usr/bin/python3
"""Render a chat template with Python's jinja2 exactly as Hugging Face
transformers does (chat_template_utils._compile_jinja_template): an
ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, loopcontrols,
the {% generation %} tag, and HF's tojson / raise_exception / strftime_now.

usage: render_template.py TEMPLATE --messages F.json [--tools F.json]
           [--add-generation-prompt] [--var KEY=JSON]... [--now EPOCH]
       render_template.py --batch CASES.json      (see batch())

Variables are those apply_chat_template passes: messages, tools (None when
absent), documents (None), add_generation_prompt, then the --var values
(bos_token, eos_token and template kwargs).  --now pins strftime_now's clock
(local time of that Unix timestamp) so renders are reproducible.
Prints the rendered text with no newline added; on a template error prints
"error: MESSAGE" on stderr and exits 1."""
import argparse
import json
import sys
from datetime import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class AssistantTracker(Extension):
    # HF marks the assistant-generated span; rendering just emits the body.
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env(now):
    """HF's environment; now pins strftime_now (None = the real clock)."""
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return (datetime.fromtimestamp(now) if now is not None else datetime.now()).strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(template, messages, tools, add_generation_prompt, variables):
    """(output, None) or (None, error message)."""
    try:
        return template.render(
            messages=messages, tools=tools, documents=None,
            add_generation_prompt=add_generation_prompt, **variables), None
    except Exception as e:  # every template failure is reported the same way
        return None, str(e)


def batch(path):
    """Cases: a JSON list of {template (path), messages, tools, add_generation_prompt,
    vars, now}.  Prints a JSON list of {"output": ...} or {"error": ...}."""
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)
    compiled = {}
    results = []
    for c in cases:
        key = (c["template"], c.get("now"))
        if key not in compiled:
            with open(c["template"], encoding="utf-8") as f:
                compiled[key] = make_env(c.get("now")).from_string(f.read())
        out, err = render(compiled[key], c["messages"], c.get("tools"),
                          c.get("add_generation_prompt", False), c.get("vars") or {})
        results.append({"output": out} if err is None else {"error": err})
    sys.stdout.write(json.dumps(results, ensure_ascii=True))
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--batch":
        return batch(sys.argv[2])
    ap = argparse.ArgumentParser()
    ap.add_argument("template")
    ap.add_argument("--messages", required=True)
    ap.add_argument("--tools")
    ap.add_argument("--add-generation-prompt", action="store_true")
    ap.add_argument("--var", action="append", default=[])
    ap.add_argument("--now", type=float)
    a = ap.parse_args()

    with open(a.template, encoding="utf-8") as f:
        source = f.read()
    with open(a.messages, encoding="utf-8") as f:
        messages = json.load(f)
    tools = None
    if a.tools:
        with open(a.tools, encoding="utf-8") as f:
            tools = json.load(f)
    variables = {}
    for kv in a.var:
        key, _, value = kv.partition("=")
        variables[key] = json.loads(value)
    try:
        template = make_env(a.now).from_string(source)
    except Exception as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out, err = render(template, messages, tools, a.add_generation_prompt, variables)
    if err is not None:
        print(f"error: {err}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(out.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
