#!/usr/bin/env python3
"""Generated code for handler authors from the Avro schemas in schemas/:

- Python dataclasses (dataclasses-avroschema's ModelGenerator) in schemas/python/skiff_schemas/,
  one module per schema, named after the file (business.policy.issued.v1.avsc ->
  business_policy_issued_v1.py);
- Java classes (avro-maven-plugin, schemas/java/pom.xml) in schemas/java/src/main/java.

  schemas/generate.py           regenerate both
  schemas/generate.py --check   fail when the committed code differs from a fresh generation
"""
import filecmp
import io
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import fastavro
from dataclasses_avroschema import ModelGenerator

SCHEMAS = pathlib.Path(__file__).resolve().parent
PY_OUT = SCHEMAS / "python" / "skiff_schemas"
JAVA = SCHEMAS / "java"
HEADER = '"""Generated from schemas/{name} by schemas/generate.py: do not edit."""\n'


def python_modules():
    out = {"__init__.py": '"""Dataclasses of the Avro schemas in schemas/ (generated)."""\n'}
    gen = ModelGenerator()
    for avsc in sorted(SCHEMAS.glob("*.avsc")):
        code = gen.render(schema=json.loads(avsc.read_text()), model_type="dataclass")
        body = "\n".join(line.rstrip() for line in code.splitlines()).strip() + "\n"
        out[avsc.stem.replace(".", "_").replace("-", "_") + ".py"] = (
            HEADER.format(name=avsc.name) + body)
    return out


def java_tree(dest):
    subprocess.run(["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(JAVA / "pom.xml"),
                    "generate-sources", f"-Dgenerated.dir={dest}"], check=True)


def round_trip_python():
    """Each generated dataclass encodes a sample to Avro binary that decodes back to the same
    record, also with the .avsc it came from, and its schema has that file's fields."""
    sys.path.insert(0, str(PY_OUT.parent))
    for avsc in sorted(SCHEMAS.glob("*.avsc")):
        schema = json.loads(avsc.read_text())
        module = __import__("skiff_schemas." + avsc.stem.replace(".", "_").replace("-", "_"),
                            fromlist=[schema["name"]])
        cls = getattr(module, schema["name"])
        data = cls.fake().serialize()
        assert cls.deserialize(data).serialize() == data, avsc.name
        # The bytes decode with the committed .avsc itself (fastavro, independent of the class).
        record = fastavro.schemaless_reader(io.BytesIO(data), fastavro.parse_schema(schema))
        assert list(record) == [f["name"] for f in schema["fields"]], (avsc.name, record)
        fields = [f["name"] for f in cls.avro_schema_to_python()["fields"]]
        assert fields == [f["name"] for f in schema["fields"]], (avsc.name, fields)


def differs(a, b):
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return True
    return any(differs(pathlib.Path(a) / d, pathlib.Path(b) / d) for d in cmp.common_dirs)


def main():
    check = "--check" in sys.argv
    modules = python_modules()
    if not check:
        shutil.rmtree(PY_OUT, ignore_errors=True)
        PY_OUT.mkdir(parents=True)
        for name, text in modules.items():
            (PY_OUT / name).write_text(text)
        shutil.rmtree(JAVA / "src" / "main" / "java", ignore_errors=True)
        java_tree(JAVA / "src" / "main" / "java")
        return
    stale = [name for name, text in modules.items()
             if not (PY_OUT / name).exists() or (PY_OUT / name).read_text() != text]
    stale += [p.name for p in PY_OUT.glob("*.py") if p.name not in modules]
    with tempfile.TemporaryDirectory() as tmp:
        java_tree(pathlib.Path(tmp) / "java")
        if differs(JAVA / "src" / "main" / "java", pathlib.Path(tmp) / "java"):
            stale.append("schemas/java/src/main/java")
    if stale:
        sys.exit("generated code is stale (run schemas/generate.py): " + ", ".join(stale))
    round_trip_python()
    print(f"generated code fresh: {len(modules) - 1} Python module(s), Java classes")


if __name__ == "__main__":
    main()
