"""skiff devstack: the Avro side of the schema registry stand-in (schema_registry.py):
schemas parsed into nodes (names, namespaces, aliases, defaults checked), the resolution rules
of Avro's SchemaCompatibility between a reader and a writer schema, the compatibility levels
built on them, and the text a schema is stored and deduplicated under. Standard library only;
devstack/kafka_selfcheck.py checks the rules against Apache Avro's own checker."""

import json
import re

LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
          "FULL", "FULL_TRANSITIVE")
PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SchemaError(Exception):
    pass


# --- Avro schema parsing ---------------------------------------------------------------------

def _fullname(name, namespace):
    if "." in name:
        return name
    return f"{namespace}.{name}" if namespace else name


def _check_name(fullname):
    for part in fullname.split("."):
        if not NAME_RE.match(part):
            raise SchemaError(f"invalid name {fullname!r}")


def parse_schema(obj):
    """Parses an Avro schema (decoded JSON) into nodes; raises SchemaError when invalid.

    Nodes: {"type": primitive} | record {"type", "name", "aliases", "fields": [...]} |
    enum {"type", "name", "aliases", "symbols", "default"} | fixed {"type", "name", "size"} |
    {"type": "array", "items"} | {"type": "map", "values"} | {"type": "union", "branches"}.
    Named types are shared node objects, so recursive schemas are graphs.
    """
    names = {}
    return _parse(obj, None, names)


def _parse(obj, namespace, names):
    if isinstance(obj, str):
        if obj in PRIMITIVES:
            return {"type": obj}
        full = _fullname(obj, namespace)
        if full in names:
            return names[full]
        if obj in names:
            return names[obj]
        raise SchemaError(f"unknown type {obj!r}")
    if isinstance(obj, list):
        branches = [_parse(b, namespace, names) for b in obj]
        seen = set()
        for b in branches:
            if b["type"] == "union":
                raise SchemaError("a union may not directly contain a union")
            key = b.get("name") or b["type"]
            if key in seen:
                raise SchemaError(f"duplicate {key!r} in union")
            seen.add(key)
        return {"type": "union", "branches": branches}
    if not isinstance(obj, dict):
        raise SchemaError(f"not a schema: {json.dumps(obj)[:80]}")
    t = obj.get("type")
    if t is None:
        raise SchemaError("a schema object needs a \"type\"")
    if isinstance(t, (dict, list)):
        return _parse(t, namespace, names)
    if not isinstance(t, str):
        raise SchemaError(f"invalid type {t!r}")
    if t in PRIMITIVES:
        return {"type": t}
    if t in ("record", "error", "enum", "fixed"):
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise SchemaError(f"a {t} needs a \"name\"")
        ns = obj.get("namespace", namespace)
        if ns is not None and not isinstance(ns, str):
            raise SchemaError("\"namespace\" must be a string")
        full = _fullname(name, ns or None)
        _check_name(full)
        if full in names or full in PRIMITIVES:
            raise SchemaError(f"type {full!r} is defined twice")
        inner_ns = full.rpartition(".")[0] or None
        aliases = obj.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise SchemaError(f"\"aliases\" of {full!r} must be a list of strings")
        node = {"type": "record" if t == "error" else t, "name": full,
                "aliases": [_fullname(a, inner_ns) for a in aliases]}
        names[full] = node
        if t in ("record", "error"):
            _parse_fields(obj, node, inner_ns, names)
        elif t == "enum":
            symbols = obj.get("symbols")
            if (not isinstance(symbols, list) or not all(
                    isinstance(s, str) and NAME_RE.match(s) for s in symbols)):
                raise SchemaError(f"enum {full!r} needs \"symbols\", a list of names")
            if len(set(symbols)) != len(symbols):
                raise SchemaError(f"enum {full!r} has duplicate symbols")
            node["symbols"] = symbols
            node["default"] = obj.get("default")
            if node["default"] is not None and node["default"] not in symbols:
                raise SchemaError(f"enum {full!r}: default is not one of its symbols")
        else:
            size = obj.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise SchemaError(f"fixed {full!r} needs a \"size\"")
            node["size"] = size
        return node
    if t == "array":
        if "items" not in obj:
            raise SchemaError("an array needs \"items\"")
        return {"type": "array", "items": _parse(obj["items"], namespace, names)}
    if t == "map":
        if "values" not in obj:
            raise SchemaError("a map needs \"values\"")
        return {"type": "map", "values": _parse(obj["values"], namespace, names)}
    # A reference to a named type written as {"type": "Name"}.
    return _parse(t, namespace, names)


def _parse_fields(obj, node, namespace, names):
    fields = obj.get("fields")
    if not isinstance(fields, list):
        raise SchemaError(f"record {node['name']!r} needs \"fields\", a list")
    node["fields"] = []
    seen = set()
    for f in fields:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise SchemaError(f"record {node['name']!r}: each field needs a \"name\"")
        fname = f["name"]
        if not NAME_RE.match(fname):
            raise SchemaError(f"invalid field name {fname!r}")
        if fname in seen:
            raise SchemaError(f"record {node['name']!r}: duplicate field {fname!r}")
        seen.add(fname)
        if "type" not in f:
            raise SchemaError(f"field {fname!r} needs a \"type\"")
        ftype = _parse(f["type"], namespace, names)
        aliases = f.get("aliases", [])
        if not isinstance(aliases, list):
            raise SchemaError(f"field {fname!r}: \"aliases\" must be a list")
        field = {"name": fname, "type": ftype, "has_default": "default" in f,
                 "default": f.get("default"), "aliases": aliases}
        if field["has_default"] and not valid_default(ftype, f["default"]):
            raise SchemaError(f"invalid default for field {fname!r}: "
                              f"{json.dumps(f['default'])[:80]}")
        node["fields"].append(field)


def valid_default(node, value, _depth=0):
    """Whether a JSON value is a valid default for the schema node (Avro's JSON encoding)."""
    if _depth > 64:
        return True
    t = node["type"]
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if t in ("float", "double"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t in ("bytes", "string"):
        return isinstance(value, str)
    if t == "fixed":
        return isinstance(value, str) and len(value) == node["size"]
    if t == "enum":
        return value in node["symbols"]
    if t == "array":
        return isinstance(value, list) and all(
            valid_default(node["items"], v, _depth + 1) for v in value)
    if t == "map":
        return isinstance(value, dict) and all(
            valid_default(node["values"], v, _depth + 1) for v in value.values())
    if t == "record":
        if not isinstance(value, dict):
            return False
        for f in node["fields"]:
            if f["name"] in value:
                if not valid_default(f["type"], value[f["name"]], _depth + 1):
                    return False
            elif not f["has_default"]:
                return False
        return True
    if t == "union":
        # The Avro specification says the first branch; Avro's Java library (which Confluent's
        # registry uses) accepts a value of any branch, and so does this stand-in.
        return any(valid_default(b, value, _depth + 1) for b in node["branches"])
    return False


# --- Avro schema resolution (compatibility) --------------------------------------------------

PROMOTIONS = {
    "int": ("long", "float", "double"),
    "long": ("float", "double"),
    "float": ("double",),
    "string": ("bytes",),
    "bytes": ("string",),
}


def _short(name):
    return name.rpartition(".")[2]


def _names_match(reader, writer):
    return _short(reader["name"]) == _short(writer["name"]) or writer["name"] in reader.get(
        "aliases", [])


def incompatibilities(reader, writer):
    """Reasons why data written with `writer` cannot be read with `reader` ([] = compatible)."""
    problems = []
    _resolve(reader, writer, "", problems, set())
    return problems


def _describe(node):
    return node.get("name") or node["type"]


def _resolve(reader, writer, path, problems, seen):
    key = (id(reader), id(writer))
    if key in seen:
        return
    seen.add(key)
    rt, wt = reader["type"], writer["type"]
    if wt == "union":
        for i, b in enumerate(writer["branches"]):
            _resolve(reader, b, f"{path}/{i}", problems, seen)
        return
    if rt == "union":
        for b in reader["branches"]:
            trial = []
            _resolve(b, writer, path, trial, set(seen))
            if not trial:
                return
        problems.append(f"{path or '/'}: reader union lacks writer type {_describe(writer)}")
        return
    if rt != wt:
        if rt in PROMOTIONS.get(wt, ()):
            return
        problems.append(f"{path or '/'}: reader type {_describe(reader)} does not match "
                        f"writer type {_describe(writer)}")
        return
    if rt in PRIMITIVES:
        return
    if rt in ("record", "enum", "fixed") and not _names_match(reader, writer):
        problems.append(f"{path or '/'}: name mismatch: reader {reader['name']}, "
                        f"writer {writer['name']}")
        return
    if rt == "fixed":
        if reader["size"] != writer["size"]:
            problems.append(f"{path or '/'}: fixed size mismatch: reader {reader['size']}, "
                            f"writer {writer['size']}")
    elif rt == "enum":
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and reader.get("default") is None:
            problems.append(f"{path or '/'}: reader enum {reader['name']} lacks symbols "
                            f"{missing}")
    elif rt == "array":
        _resolve(reader["items"], writer["items"], f"{path}/items", problems, seen)
    elif rt == "map":
        _resolve(reader["values"], writer["values"], f"{path}/values", problems, seen)
    elif rt == "record":
        wfields = {f["name"]: f for f in writer["fields"]}
        for rf in reader["fields"]:
            wf = wfields.get(rf["name"])
            if wf is None:
                wf = next((wfields[a] for a in rf["aliases"] if a in wfields), None)
            if wf is None:
                if not rf["has_default"]:
                    problems.append(f"{path}/fields/{rf['name']}: reader field "
                                    f"{rf['name']!r} has no default value and is missing "
                                    f"in the writer's schema")
                continue
            _resolve(rf["type"], wf["type"], f"{path}/fields/{rf['name']}", problems, seen)


def check_level(level, new, olders):
    """Problems of `new` (parsed) against `olders` (parsed, oldest first) under `level`."""
    if level == "NONE" or not olders:
        return []
    targets = olders if level.endswith("_TRANSITIVE") else olders[-1:]
    base = level.replace("_TRANSITIVE", "")
    problems = []
    for old in targets:
        if base in ("BACKWARD", "FULL"):
            problems += incompatibilities(new, old)
        if base in ("FORWARD", "FULL"):
            problems += incompatibilities(old, new)
    return problems


def canonical_text(obj):
    """The stored text of a schema: compact JSON, {"type": "<primitive>"} folded."""
    def fold(o):
        if isinstance(o, dict):
            if len(o) == 1 and o.get("type") in PRIMITIVES:
                return o["type"]
            return {k: fold(v) if k in ("type", "items", "values", "fields") else v
                    for k, v in o.items()}
        if isinstance(o, list):
            return [fold(v) for v in o]
        return o
    return json.dumps(fold(obj), separators=(",", ":"), ensure_ascii=False)
