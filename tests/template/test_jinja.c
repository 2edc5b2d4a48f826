/* tests/template/test_jinja.c — the Jinja interpreter feature by feature:
 * statements, expressions, filters, tests, methods and Python value printing
 * with expected strings (checked against jinja2 3.1 by hand and by the
 * oracle test), then every failure path: syntax errors with line:col,
 * unknown filters, raise_exception, runaway loops, deep recursion, output
 * bounds and the sandbox refusing mutation. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../format/scratch.h"
#include "../support/test.h"
#include "template/chat_template.h"
#include "template/jinja.h"

/* Render src with vars (JSON text or NULL); returns malloc'ed output or NULL with *err set. */
static char *render_opts(const char *src, const char *vars, const jinja_options *opt, bs_error *err) {
    jinja_template *t = NULL;
    if (jinja_parse(src, "t", &t, err) != BS_OK) return NULL;
    json_t *v = vars ? json_loads(vars, 0, NULL) : NULL;
    if (vars && !v) {
        fprintf(stderr, "  bad test JSON: %s\n", vars);
        test_failed_ = 1;
    }
    char *out = NULL;
    size_t len;
    jinja_render(t, v, opt, &out, &len, err);
    json_decref(v);
    jinja_free(t);
    return out;
}

static char *render(const char *src, const char *vars, bs_error *err) { return render_opts(src, vars, NULL, err); }

typedef struct { const char *src, *vars, *want; } okcase;

static void check_cases(const okcase *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        bs_error err = {0};
        char *out = render(cases[i].src, cases[i].vars, &err);
        if (!out) {
            fprintf(stderr, "  %s: failed: %s\n", cases[i].src, err.msg);
            test_failed_ = 1;
            continue;
        }
        if (strcmp(out, cases[i].want)) {
            fprintf(stderr, "  %s\n    got  \"%s\"\n    want \"%s\"\n", cases[i].src, out, cases[i].want);
            test_failed_ = 1;
        }
        free(out);
    }
}
#define CHECK_CASES(c) check_cases(c, sizeof c / sizeof c[0])

static void test_statements(void) {
    static const okcase c[] = {
        {"{% if a %}A{% elif b %}B{% else %}C{% endif %}", "{\"a\": 0, \"b\": 1}", "B"},
        {"{% for x in xs %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}", "{\"xs\": [\"a\", \"b\"]}", "1a,2b"},
        {"{% for x in xs %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.length }}{{ loop.first }};{% endfor %}",
         "{\"xs\": [1, 2]}", "0212True;1102False;"},
        {"{% for x in xs %}{{ loop.previtem }}-{{ loop.nextitem }}|{% endfor %}", "{\"xs\": [1, 2, 3]}", "-2|1-3|2-|"},
        {"{% for x in xs %}{{ loop.cycle('a', 'b') }}{% endfor %}", "{\"xs\": [1, 2, 3]}", "aba"},
        {"{% for x in [] %}x{% else %}empty{% endfor %}", NULL, "empty"},
        {"{% for x in xs if x > 1 %}{{ x }}{{ loop.length }}{% endfor %}", "{\"xs\": [1, 2, 3]}", "2232"},
        {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", "{\"d\": {\"b\": 1, \"a\": 2}}", "b=1;a=2;"},
        {"{% for k, v in d | items %}{{ k }}{{ v }}{% endfor %}", "{\"d\": {\"x\": 1}}", "x1"},
        {"{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}", NULL, "02"},
        {"{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", NULL, "1"},
        {"{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}", NULL, "4"},
        {"{% set a, b = [1, 2] %}{{ b }}{{ a }}", NULL, "21"},
        {"{% set s %}in {{ 1 + 1 }}{% endset %}[{{ s }}]", NULL, "[in 2]"},
        {"{% set s | upper %}abc{% endset %}{{ s }}", NULL, "ABC"},
        {"{% macro m(a, b=2) %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, 3) }}{{ m(b=4, a=5) }}", NULL, "121354"},
        {"{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m() }}", NULL, "[]"},
        {"{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}", NULL, "321"},
        {"{% macro box() %}<{{ caller() }}>{% endmacro %}{% call box() %}body{% endcall %}", NULL, "<body>"},
        {"{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}{% call(v) each([1, 2]) %}({{ v }}){% endcall %}", NULL, "(1)(2)"},
        {"{% filter upper %}abc{{ 'd' }}{% endfilter %}", NULL, "ABCD"},
        {"{% raw %}{{ x }}{% if %}{% endraw %}", NULL, "{{ x }}{% if %}"},
        {"a{# comment #}b", NULL, "ab"},
        {"{% generation %}gen{{ 1 }}{% endgeneration %}", NULL, "gen1"},
    };
    CHECK_CASES(c);
}

static void test_whitespace(void) {
    static const okcase c[] = {
        {"a  {{- 'b' -}}  c", NULL, "abc"},
        {"a  {%- if true -%}  b  {%- endif -%}  c", NULL, "abc"},
        {"x\n    {% if true %}\nyes\n    {% endif %}\nz", NULL, "x\nyes\nz"},
        {"x\n  {%+ if true %}y{% endif %}", NULL, "x\n  y"},
        {"{% if true +%}\ny{% endif %}", NULL, "\ny"},
        {"a\n  {# c #}\nb", NULL, "a\nb"},
        {"a {#- c -#} b", NULL, "ab"},
        {"  {{ 'v' }}\n", NULL, "  v"},
        {"line\n\n", NULL, "line\n"},
        {"a\r\nb", NULL, "a\nb"},
    };
    CHECK_CASES(c);
}

static void test_expressions(void) {
    static const okcase c[] = {
        {"{{ 'a\\n\\t\\\\\\'\\\"\\u00e9\\x41' }}", NULL, "a\n\t\\'\"\xc3\xa9" "A"},
        {"{{ 'con' \"cat\" }}", NULL, "concat"},
        {"{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 3 ** 2 }}", NULL, "7 9 3 -4 1 2 64"},
        {"{{ 7 / 2 }} {{ 4 / 2 }} {{ 1.5 + 1 }} {{ -x }} {{ 0.1 + 0.2 }} {{ 1e-5 }} {{ 1e16 }} {{ 123456789.0 }}", "{\"x\": 3}",
         "3.5 2.0 2.5 -3 0.30000000000000004 1e-05 1e+16 123456789.0"},
        {"{{ 'ab' * 2 }} {{ [1] + [2] }} {{ 'a' ~ 1 ~ none ~ true }}", NULL, "abab [1, 2] a1NoneTrue"},
        {"{{ 'a' + x | trim + 'b' }}", "{\"x\": \"  y  \"}", "ayb"},
        {"{{ -x | abs }}", "{\"x\": 3}", "3"},
        {"{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 2 >= 2 }}", NULL, "True False True True True"},
        {"{{ 'a' in 'cat' }} {{ 1 in [1, 2] }} {{ 'k' in d }} {{ 'z' not in d }}", "{\"d\": {\"k\": 1}}", "True True True True"},
        {"{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' and 'z' }}| {{ not 0 }} {{ none or none }}", NULL, "x y | True None"},
        {"{{ 'y' if c else 'n' }} [{{ 'y' if not c }}]", "{\"c\": true}", "y []"},
        {"{{ [1, 'a', none, true, 1.5, [2], {'k': (1,)}] }}", NULL, "[1, 'a', None, True, 1.5, [2], {'k': (1,)}]"},
        {"{{ {'a': 1, 'b': 'x'} }} {{ (1, 2) }} {{ () }} {{ none }} {{ false }}", NULL, "{'a': 1, 'b': 'x'} (1, 2) () None False"},
        {"{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'nl\\n', '\\u00e9'] }}", NULL,
         "[\"it's\", 'say \"hi\"', 'both \\' \"', 'nl\\n', '\xc3\xa9']"},
        {"{{ d.k }} {{ d['k'] }} {{ l[0] }} {{ l[-1] }} {{ l.1 }} {{ s[1] }}", "{\"d\": {\"k\": \"v\"}, \"l\": [1, 2], \"s\": \"h\xc3\xa9y\"}",
         "v v 1 2 2 \xc3\xa9"},
        {"{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ l[-2:] }} {{ l[5:] }} {{ s[::-1] }} {{ s[1:3] }}",
         "{\"l\": [1, 2, 3], \"s\": \"ab\xc3\xa9\"}", "[2, 3] [1, 2] [3, 2, 1] [1, 3] [2, 3] [] \xc3\xa9" "ba b\xc3\xa9"},
        {"[{{ missing }}] [{{ d.nope }}] {{ missing is defined }} {{ d.nope is undefined }}", "{\"d\": {}}", "[] [] False True"},
        {"{% for x in missing %}x{% endfor %}{{ missing | length }}", NULL, "0"},
        {"{{ 0x10 }} {{ 0o10 }} {{ 0b10 }} {{ 1_000 }} {{ True }} {{ None }}", NULL, "16 8 2 1000 True None"},
        {"{{ '%s-%d-%.1f-%5s|%%' % ('a', 2, 1.25, 'r') }} {{ '%(k)s' % {'k': 'v'} }}", NULL, "a-2-1.2-    r|% v"},
    };
    CHECK_CASES(c);
}

static void test_filters(void) {
    static const okcase c[] = {
        {"{{ x | tojson }}", "{\"x\": {\"b\": [1, 2.5, \"\xc3\xa9\\n\\\"\", null, true, false], \"a\": {}}}",
         "{\"b\": [1, 2.5, \"\xc3\xa9\\n\\\"\", null, true, false], \"a\": {}}"},
        {"{{ x | tojson(indent=2) }}", "{\"x\": {\"a\": [1, {}], \"b\": []}}",
         "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}"},
        {"{{ x | tojson(sort_keys=true, separators=(',', ':')) }} {{ 'é' | tojson(ensure_ascii=true) }} {{ 1.0 | tojson }}",
         "{\"x\": {\"b\": 1, \"a\": 2}}", "{\"a\":2,\"b\":1} \"\\u00e9\" 1.0"},
        {"{{ ' a ' | trim }}|{{ 'xax' | trim('x') }}|{{ 'aB' | upper }}{{ 'aB' | lower }}|{{ 'hELLO wORLD' | capitalize }}|{{ 'hi there-you' | title }}",
         NULL, "a|a|ABab|Hello world|Hi There-You"},
        {"{{ [1, 2] | length }}{{ 'h\xc3\xa9' | count }}{{ {'a': 1} | length }}", NULL, "221"},
        {"{{ [1, 2] | join }} {{ ['a', 'b'] | join(', ') }} {{ xs | join('/', attribute='n') }}", "{\"xs\": [{\"n\": \"p\"}, {\"n\": \"q\"}]}",
         "12 a, b p/q"},
        {"{{ 'aaa' | replace('a', 'b') }} {{ 'aaa' | replace('a', 'b', 2) }}", NULL, "bbb bba"},
        {"{{ x | default('d') }} {{ '' | default('d') }} {{ '' | default('d', true) }} {{ none | d('n') }}", NULL, "d  d None"},
        {"{{ [3, 4] | first }} {{ [3, 4] | last }} {{ 'ab' | list }} {{ 5 | string }}{{ '7' | int }}{{ 'x' | int }}{{ '2.5' | float }}",
         NULL, "3 4 ['a', 'b'] 5702.5"},
        {"{{ 2.675 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.1 | round(0, 'ceil') }} {{ 2.9 | round(0, 'floor') }} {{ -2 | abs }}",
         NULL, "2.67 2.0 4.0 3.0 2.0 2"},
        {"{{ xs | selectattr('r', 'equalto', 'u') | map(attribute='c') | list }} {{ xs | rejectattr('r', 'eq', 'u') | list | length }}",
         "{\"xs\": [{\"r\": \"u\", \"c\": 1}, {\"r\": \"a\", \"c\": 2}, {\"r\": \"u\", \"c\": 3}]}", "[1, 3] 1"},
        {"{{ xs | selectattr('c') | list | length }} {{ [0, 1, 2] | select | list }} {{ [1, 2, 3] | reject('odd') | list }} {{ ['a'] | map('upper') | list }}",
         "{\"xs\": [{\"c\": 0}, {\"c\": 1}]}", "1 [1, 2] [2] ['A']"},
        {"{{ [2, 1, 2, 'A', 'a'] | unique | list }} {{ ['b', 'A', 'c'] | sort }} {{ [1, 3, 2] | sort(reverse=true) }}", NULL,
         "[2, 1, 'A'] ['A', 'b', 'c'] [3, 2, 1]"},
        {"{{ xs | sort(attribute='n') | map(attribute='n') | join }} {{ [1, 2] | reverse | list }} {{ 'ab' | reverse }}",
         "{\"xs\": [{\"n\": 2}, {\"n\": 1}]}", "12 [2, 1] ba"},
        {"{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(1, first=true) }}|{{ 'a\\n\\nb' | indent(1, blank=true) }}", NULL,
         "a\n  b\n\n  c| a\n b|a\n \n b"},
        {"{{ '<a href=\"x\">&</a>' | e }} {{ '<b>' | escape }} {{ '<i>' | safe }}", NULL, "&lt;a href=&#34;x&#34;&gt;&amp;&lt;/a&gt; &lt;b&gt; <i>"},
        {"{{ [1, 2, 3] | batch(2) | list }} {{ 'a b  c' | wordcount }} {{ [2, 1, 3] | min }}{{ [2, 1, 3] | max }}{{ [1, 2] | sum }}", NULL,
         "[[1, 2], [3]] 3 133"},
        {"{{ '<p>a <b>b</b></p>' | striptags }}|{{ 'x' | center(5) }}|{{ 'hello world foo' | truncate(9) }}", NULL, "a b|  x  |hello..."},
        {"{{ {'b': 1, 'a': 2} | dictsort }} {{ {'b': 1, 'a': 2} | items | list }} {{ 'ab' | attr('upper') is callable }}", NULL,
         "[('a', 2), ('b', 1)] [('b', 1), ('a', 2)] True"},
        {"{{ '%s=%s' | format('k', 1) }}", NULL, "k=1"},
    };
    CHECK_CASES(c);
}

static void test_tests_and_methods(void) {
    static const okcase c[] = {
        {"{{ none is none }}{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ true is number }}{{ 1 is integer }}",
         NULL, "TrueTrueTrueTrueTrueTrueTrue"},
        {"{{ 's' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 's' is sequence }}{{ range is callable }}{{ x is iterable }}", NULL,
         "TrueTrueTrueTrueTrueTrue"},
        {"{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 2 is in [2] }}",
         NULL, "TrueFalseTrueTrueTrueTrueTrue"},
        {"{{ 1 is eq 1 }}{{ 1 is equalto 2 }}{{ 1 is ne 2 }}{{ 1 is lt 2 }}{{ 2 is gt 1 }}{{ 2 is le 2 }}{{ 'ab' is lower }}{{ 'AB' is upper }}{{ 1 is not string }}",
         NULL, "TrueFalseTrueTrueTrueTrueTrueTrueTrue"},
        {"{{ 'ab'.startswith('a') }}{{ 'ab'.startswith(('x', 'b')) }}{{ 'ab'.endswith('b') }} {{ ' x '.strip() }}|{{ 'xxyxx'.strip('x') }}|{{ ' x'.lstrip() }}|{{ 'x '.rstrip() }}|",
         NULL, "TrueFalseTrue x|y|x|x|"},
        {"{{ 'a,b,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ ' a  b '.split() }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'a\\nb\\r\\nc'.splitlines() }}",
         NULL, "['a', 'b', 'c'] ['a', 'b,c'] ['a', 'b'] ['a,b', 'c'] ['a', 'b', 'c']"},
        {"{{ 'aXa'.replace('a', 'b') }} {{ 'hello world'.title() }} {{ 'hi'.upper() }}{{ 'HI'.lower() }} {{ 'hI'.capitalize() }}", NULL,
         "bXb Hello World HIhi Hi"},
        {"{{ '{} {}'.format(1, 'a') }} {{ '{1}{0}'.format('a', 'b') }} {{ '{n}'.format(n=3) }} {{ '{{}}'.format() }}", NULL, "1 a ba 3 {}"},
        {"{{ 'banana'.find('an') }} {{ 'banana'.rfind('an') }} {{ 'banana'.find('x') }} {{ 'banana'.count('a') }} {{ ','.join(['a', 'b']) }}",
         NULL, "1 3 -1 3 a,b"},
        {"{{ '12'.isdigit() }}{{ 'ab'.isalpha() }}{{ ' '.isspace() }}{{ 'a1'.isalnum() }}{{ ''.isdigit() }}", NULL, "TrueTrueTrueTrueFalse"},
        {"{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 0) }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list }}",
         "{\"d\": {\"a\": 1}}", "1 None 0 ['a'] [1] [('a', 1)]"},
        {"{{ [1, 2, 2].index(2) }} {{ [1, 2, 2].count(2) }}", NULL, "1 2"},
        {"{{ range(3) | list }} {{ range(1, 4) | list }} {{ range(6, 0, -2) | list }} {{ dict(a=1) }} {{ namespace(a=1).a }}", NULL,
         "[0, 1, 2] [1, 2, 3] [6, 4, 2] {'a': 1} 1"},
        {"{{ strftime_now('%Y-%m-%d') | length }}", NULL, "10"},
    };
    CHECK_CASES(c);
}

static void test_pinned_clock(void) {
    bs_error err = {0};
    jinja_options opt = {.now = 86400 * 365};
    char *out = render_opts("{{ strftime_now('%Y') }}", NULL, &opt, &err);
    CHECK(out && (!strcmp(out, "1971") || !strcmp(out, "1970")));
    free(out);
}

typedef struct { const char *src, *vars, *want_err; } errcase;

static void test_errors(void) {
    static const errcase c[] = {
        {"line1\n  {{ 1 + }}", NULL, "t:2:10: unexpected end of print statement"},
        {"{% if x %}never closed", NULL, "t:1:23: unexpected end of template, expected 'elif' or 'else' or 'endif'"},
        {"{% for %}", NULL, "t:1:8: expected a name"},
        {"{% frobnicate %}", NULL, "t:1:4: unknown tag 'frobnicate'"},
        {"{% endfor %}", NULL, "unexpected 'endfor'"},
        {"{{ x | nosuchfilter }}", NULL, "t:1:8: no filter named 'nosuchfilter'"},
        {"{{ x is nosuchtest }}", NULL, "no test named 'nosuchtest'"},
        {"{{ 'unterminated }}", NULL, "unterminated string literal"},
        {"{# open comment", NULL, "missing end of comment tag"},
        {"{{ (1 }}", NULL, "unbalanced bracket"},
        {"{% break %}", NULL, "'break' outside of a loop"},
        {"\n{{ raise_exception('Custom failure: ' ~ 42) }}", NULL, "t:2:19: Custom failure: 42"},
        {"{{ 'a' + 1 }}", NULL, "can only concatenate str (not \"int\") to str"},
        {"{{ 1 + 'a' }}", NULL, "unsupported operand type(s) for +: 'int' and 'str'"},
        {"{{ x + 1 }}", NULL, "'x' is undefined"},
        {"{{ d.a.b }}", "{\"d\": {}}", "'dict object' has no attribute 'a'"},
        {"{{ x() }}", NULL, "'x' is undefined"},
        {"{{ 1 / 0 }}", NULL, "division by zero"},
        {"{{ 'a' < 1 }}", NULL, "'<' not supported between instances of 'str' and 'int'"},
        {"{% for x in 5 %}{% endfor %}", NULL, "'int' object is not iterable"},
        {"{{ x | tojson }}", NULL, "Object of type Undefined is not JSON serializable"},
        {"{{ xs.append(1) }}", "{\"xs\": []}", "access to attribute 'append' of 'list' object is unsafe."},
        {"{{ d.update({}) }}", "{\"d\": {}}", "access to attribute 'update' of 'dict' object is unsafe."},
        {"{% set x = 1 %}{% set x.y = 2 %}", NULL, "can only set attributes on namespaces"},
        {"{{ range(1000000) }}", NULL, "Range too big"},
        {"{% set a, b = [1] %}", NULL, "not enough values to unpack (expected 2, got 1)"},
        {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, "maximum recursion depth exceeded"},
        {"{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", NULL, "more than 1000000 loop iterations"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        bs_error err = {0};
        char *out = render(c[i].src, c[i].vars, &err);
        if (out || !strstr(err.msg, c[i].want_err)) {
            fprintf(stderr, "  %s\n    got  %s\n    want error containing \"%s\"\n", c[i].src, out ? "(rendered)" : err.msg,
                    c[i].want_err);
            test_failed_ = 1;
        }
        free(out);
    }
}

static void test_output_bound(void) {
    bs_error err = {0};
    jinja_options opt = {.max_output = 1000};
    char *out = render_opts("{% for i in range(100) %}{{ 'xxxxxxxxxxxxxxxxxxxx' }}{% endfor %}", NULL, &opt, &err);
    CHECK(out == NULL);
    CHECK(strstr(err.msg, "output larger than 1000 bytes") != NULL);
    free(out);
    out = render_opts("{{ 'x' * 100000 }}", NULL, &opt, &err);
    CHECK(out == NULL);
    CHECK(strstr(err.msg, "too large") != NULL);
    free(out);
}

static void test_deep_nesting_is_an_error(void) {
    char src[4096] = "{{ ";
    for (int i = 0; i < 1000; i++) strcat(src, "(");
    bs_error err = {0};
    jinja_template *t = NULL;
    CHECK(jinja_parse(src, "deep", &t, &err) != BS_OK);
    CHECK(t == NULL);
    CHECK(strstr(err.msg, "deep:1:") != NULL);
}

static void test_parse_once_render_many(void) {
    bs_error err = {0};
    jinja_template *t = NULL;
    CHECK_OK(jinja_parse("{{ greeting }}, {{ name }}!", NULL, &t, &err), &err);
    const char *names[] = {"{\"greeting\": \"Hi\", \"name\": \"A\"}", "{\"greeting\": \"Yo\", \"name\": \"B\"}"};
    const char *want[] = {"Hi, A!", "Yo, B!"};
    for (int i = 0; i < 2 && t; i++) {
        json_t *v = json_loads(names[i], 0, NULL);
        char *out = NULL;
        size_t len = 0;
        CHECK_OK(jinja_render(t, v, NULL, &out, &len, &err), &err);
        CHECK_STR(out, want[i]);
        CHECK_INT(len, strlen(want[i]));
        free(out);
        json_decref(v);
    }
    jinja_free(t);
}

/* ---- chat_template ------------------------------------------------------ */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static char *render_chat(chat_template *t, const char *messages, int agp, const char *extra) {
    json_t *m = json_loads(messages, 0, NULL), *x = extra ? json_loads(extra, 0, NULL) : NULL;
    char *out = NULL;
    size_t len;
    bs_error err = {0};
    CHECK_OK(chat_template_render(t, m, NULL, agp, x, &out, &len, &err), &err);
    json_decref(m);
    json_decref(x);
    return out;
}

static void test_chat_template_from_hf_dirs(void) {
    bs_error err = {0};
    chat_template *t = NULL;
    const char *msgs = "[{\"role\": \"user\", \"content\": \"hi\"}]";
    char dir[512];

    snprintf(dir, sizeof dir, "%s", scratch_path("hf_string"));
    mkdir(dir, 0700);
    write_file(scratch_path("hf_string/tokenizer_config.json"),
               "{\"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}, \"eos_token\": \"</s>\","
               " \"chat_template\": \"{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}"
               "{% if add_generation_prompt %}>{% endif %}{{ enable_x }}\"}");
    CHECK_OK(chat_template_from_model(dir, NULL, &t, &err), &err);
    if (t) {
        char *out = render_chat(t, msgs, 1, "{\"enable_x\": \"X\"}");
        CHECK_STR(out, "<s>hi</s>>X");
        free(out);
        CHECK_STR(chat_template_bos(t), "<s>");
        chat_template_close(t);
    }

    snprintf(dir, sizeof dir, "%s", scratch_path("hf_list"));
    mkdir(dir, 0700);
    write_file(scratch_path("hf_list/tokenizer_config.json"),
               "{\"chat_template\": [{\"name\": \"default\", \"template\": \"D\"}, {\"name\": \"tool_use\", \"template\": \"T\"}]}");
    CHECK_OK(chat_template_from_model(dir, NULL, &t, &err), &err);
    if (t) CHECK_STR(chat_template_source(t), "D");
    chat_template_close(t);
    CHECK_OK(chat_template_from_model(dir, "tool_use", &t, &err), &err);
    if (t) CHECK_STR(chat_template_source(t), "T");
    chat_template_close(t);
    CHECK_OK(chat_template_from_model(dir, "absent-name", &t, &err), &err);
    if (t) CHECK_STR(chat_template_source(t), "D");
    chat_template_close(t);

    snprintf(dir, sizeof dir, "%s", scratch_path("hf_file"));
    mkdir(dir, 0700);
    write_file(scratch_path("hf_file/tokenizer_config.json"), "{\"eos_token\": \"<e>\"}");
    write_file(scratch_path("hf_file/chat_template.jinja"), "file:{{ eos_token }}\n");
    CHECK_OK(chat_template_from_model(dir, NULL, &t, &err), &err);
    if (t) {
        char *out = render_chat(t, msgs, 0, NULL);
        CHECK_STR(out, "file:<e>");
        free(out);
        chat_template_close(t);
    }

    snprintf(dir, sizeof dir, "%s", scratch_path("hf_none"));
    mkdir(dir, 0700);
    CHECK_OK(chat_template_from_model(dir, NULL, &t, &err), &err);
    if (t) {
        char *out = render_chat(t, msgs, 1, NULL);
        CHECK_STR(out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
        free(out);
        chat_template_close(t);
    }

    snprintf(dir, sizeof dir, "%s", scratch_path("hf_bad"));
    mkdir(dir, 0700);
    write_file(scratch_path("hf_bad/tokenizer_config.json"), "{\"chat_template\": \"{% if %}\"}");
    CHECK(chat_template_from_model(dir, NULL, &t, &err) == BS_EFORMAT);
    CHECK(t == NULL);
    CHECK(strstr(err.msg, "hf_bad") && strstr(err.msg, "chat_template:1:"));
    write_file(scratch_path("hf_bad/tokenizer_config.json"), "{\"chat_template\": 5}");
    CHECK(chat_template_from_model(dir, NULL, &t, &err) == BS_EFORMAT);
    CHECK(chat_template_from_model(scratch_path("nope.gguf"), NULL, &t, &err) == BS_ENOTFOUND);
}

static void gguf_string(bytes *b, const char *s) {
    bytes_u64(b, strlen(s));
    bytes_put(b, s, strlen(s));
}

static void test_chat_template_from_gguf(void) {
    bytes b = {0};
    bytes_put(&b, "GGUF", 4);
    bytes_u32(&b, 3);
    bytes_u64(&b, 0); /* tensors */
    bytes_u64(&b, 4); /* metadata */
    gguf_string(&b, "tokenizer.ggml.tokens");
    bytes_u32(&b, 9); /* array */
    bytes_u32(&b, 8); /* of strings */
    bytes_u64(&b, 3);
    gguf_string(&b, "<unk>");
    gguf_string(&b, "<s>");
    gguf_string(&b, "</s>");
    gguf_string(&b, "tokenizer.ggml.bos_token_id");
    bytes_u32(&b, 4);
    bytes_u32(&b, 1);
    gguf_string(&b, "tokenizer.ggml.eos_token_id");
    bytes_u32(&b, 4);
    bytes_u32(&b, 2);
    gguf_string(&b, "tokenizer.chat_template");
    bytes_u32(&b, 8);
    gguf_string(&b, "{{ bos_token }}[{{ messages[0].content }}]{{ eos_token }}");
    const char *path = scratch_path("tmpl.gguf");
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b.p, 1, b.len, f);
        fclose(f);
    }
    bytes_free(&b);
    bs_error err = {0};
    chat_template *t = NULL;
    CHECK_OK(chat_template_from_model(path, NULL, &t, &err), &err);
    if (t) {
        char *out = render_chat(t, "[{\"role\": \"user\", \"content\": \"q\"}]", 0, NULL);
        CHECK_STR(out, "<s>[q]</s>");
        free(out);
    }
    chat_template_close(t);
}

static void test_chat_template_raise_exception(void) {
    bs_error err = {0};
    chat_template *t = NULL;
    CHECK_OK(chat_template_open("{% if messages | length > 1 %}{{ raise_exception('only one message') }}{% endif %}ok", "", "",
                                &t, &err),
             &err);
    json_t *m = json_loads("[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]", 0, NULL);
    char *out = NULL;
    size_t len;
    CHECK(chat_template_render(t, m, NULL, 0, NULL, &out, &len, &err) == BS_EINVAL);
    CHECK(out == NULL);
    CHECK(strstr(err.msg, "only one message") != NULL);
    CHECK(chat_template_render(t, json_object_get(m, "x"), NULL, 0, NULL, &out, &len, &err) == BS_EINVAL);
    json_decref(m);
    chat_template_close(t);
}

int main(void) {
    RUN(test_statements);
    RUN(test_whitespace);
    RUN(test_expressions);
    RUN(test_filters);
    RUN(test_tests_and_methods);
    RUN(test_pinned_clock);
    RUN(test_errors);
    RUN(test_output_bound);
    RUN(test_deep_nesting_is_an_error);
    RUN(test_parse_once_render_many);
    RUN(test_chat_template_from_hf_dirs);
    RUN(test_chat_template_from_gguf);
    RUN(test_chat_template_raise_exception);
    TEST_MAIN_END();
}
