#!/usr/bin/env python3
"""Independent JSON Schema validator for the subset basalt compiles to
grammars (engine/json_schema.h), used as the oracle of the constrained
decoding tests.  Written from the JSON Schema spec, sharing no code with the C
compiler.

stdin: a JSON list of {"schema": S, "texts": [str, ...]}.
stdout: a JSON list (one per case) of lists (one per text) holding null when
the text is a JSON document valid against S, else the reason."""
import json
import math
import re
import sys


class Invalid(Exception):
    pass


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise Invalid("duplicate key")
    return dict(pairs)


def reject_constant(name):
    raise Invalid("non-JSON constant " + name)


def type_of(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def has_type(v, t):
    actual = type_of(v)
    if t == "number":
        return actual in ("integer", "number")
    if t == "integer":
        return actual == "integer" or (actual == "number" and math.isfinite(v) and v == int(v))
    return actual == t


def json_equal(a, b):
    if type_of(a) in ("integer", "number") and type_of(b) in ("integer", "number"):
        return a == b
    if type_of(a) != type_of(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a == b


DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def valid_date(s):
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", s, re.ASCII)
    if not m:
        return False
    y, mo, d = (int(g) for g in m.groups())
    if not 1 <= mo <= 12 or not 1 <= d <= DAYS[mo - 1]:
        return False
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return not (mo == 2 and d == 29 and not leap)


def valid_time(s):
    return re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)", s, re.ASCII) is not None


def valid_format(fmt, s):
    if fmt == "date":
        return valid_date(s)
    if fmt == "time":
        return valid_time(s)
    if fmt == "date-time":
        return "T" in s and valid_date(s.split("T", 1)[0]) and valid_time(s.split("T", 1)[1])
    if fmt == "uuid":
        return re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", s) is not None
    if fmt == "email":
        local, at, domain = s.rpartition("@")
        label = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
        return (at == "@" and re.fullmatch(r"[A-Za-z0-9._%+-]+", local, re.ASCII) is not None
                and not local.startswith(".") and not local.endswith(".")
                and re.fullmatch(label + r"(\." + label + r")+", domain, re.ASCII) is not None)
    raise Invalid("validator: unknown format " + fmt)


def resolve(root, ref):
    if not ref.startswith("#"):
        raise Invalid("validator: non-local $ref")
    node = root
    for seg in ref[1:].split("/")[1:] if ref != "#" else []:
        seg = seg.replace("~1", "/").replace("~0", "~")
        node = node[int(seg)] if isinstance(node, list) else node[seg]
    return node


def check(v, s, root, path="$"):
    if s is True or s == {}:
        return
    if s is False:
        raise Invalid(path + ": false schema")
    if "$ref" in s:
        check(v, resolve(root, s["$ref"]), root, path)
    if "anyOf" in s:
        if not any(ok(v, sub, root) for sub in s["anyOf"]):
            raise Invalid(path + ": no anyOf branch matches")
    if "oneOf" in s:
        n = sum(ok(v, sub, root) for sub in s["oneOf"])
        if n != 1:
            raise Invalid(path + ": %d oneOf branches match" % n)
    for sub in s.get("allOf", []):
        check(v, sub, root, path)
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(has_type(v, t) for t in types):
            raise Invalid(path + ": type is " + type_of(v))
    if "enum" in s and not any(json_equal(v, e) for e in s["enum"]):
        raise Invalid(path + ": not in enum")
    if "const" in s and not json_equal(v, s["const"]):
        raise Invalid(path + ": not the const")
    t = type_of(v)
    if t == "object":
        props = s.get("properties", {})
        for k in s.get("required", []):
            if k not in v:
                raise Invalid(path + ": missing " + k)
        for k, x in v.items():
            if k in props:
                check(x, props[k], root, path + "." + k)
            elif "additionalProperties" in s:
                check(x, s["additionalProperties"], root, path + "." + k)
    if t == "array":
        prefix = s.get("prefixItems", [])
        for i, x in enumerate(v):
            if i < len(prefix):
                check(x, prefix[i], root, "%s[%d]" % (path, i))
            elif "items" in s:
                check(x, s["items"], root, "%s[%d]" % (path, i))
        if len(v) < s.get("minItems", 0) or len(v) > s.get("maxItems", math.inf):
            raise Invalid(path + ": %d items" % len(v))
    if t == "string":
        if len(v) < s.get("minLength", 0) or len(v) > s.get("maxLength", math.inf):
            raise Invalid(path + ": length %d" % len(v))
        if "pattern" in s and not re.search(s["pattern"], v, re.ASCII):
            raise Invalid(path + ": pattern mismatch")
        if "format" in s and not valid_format(s["format"], v):
            raise Invalid(path + ": bad " + s["format"])
    if t in ("integer", "number"):
        if "minimum" in s and v < s["minimum"]:
            raise Invalid(path + ": below minimum")
        if "maximum" in s and v > s["maximum"]:
            raise Invalid(path + ": above maximum")
        if "exclusiveMinimum" in s and v <= s["exclusiveMinimum"]:
            raise Invalid(path + ": not above exclusiveMinimum")
        if "exclusiveMaximum" in s and v >= s["exclusiveMaximum"]:
            raise Invalid(path + ": not below exclusiveMaximum")


def ok(v, s, root):
    try:
        check(v, s, root)
        return True
    except Invalid:
        return False


def validate(schema, text):
    try:
        v = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=reject_constant)
        check(v, schema, schema)
        return None
    except (Invalid, ValueError) as e:
        return str(e)


def main():
    cases = json.load(sys.stdin)
    json.dump([[validate(c["schema"], t) for t in c["texts"]] for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
