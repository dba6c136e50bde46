"""The minimal handler printed in SPEC.md §6 must really work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fake_skiff import FakeSkiff, make_task  # noqa: E402


def spec_example() -> str:
    with open(os.path.join(HERE, "..", "SPEC.md"), encoding="utf-8") as f:
        spec = f.read()
    section = spec[spec.index("## 6. A minimal handler"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_minimal_handler_from_spec():
    code = spec_example()
    assert len(code.strip().splitlines()) <= 25
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
    try:
        with FakeSkiff() as skiff:
            proc = subprocess.Popen([sys.executable, f.name],
                                    env=dict(os.environ, SKIFF_SOCKET=skiff.path))
            try:
                conn = skiff.accept()
                hello = conn.handshake()
                assert hello["job_types"] == ["echo"]
                task = make_task("echo", {"a": 1})
                result = conn.run_tasks([task])[task["id"]]
                assert result == {"type": "complete", "id": task["id"],
                                  "variables": {"echo": {"a": 1}}}
                conn.send({"type": "ping", "ref": "r"})
                assert conn.expect("pong") == {"type": "pong", "ref": "r"}
                conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 5000})
                assert conn.wait_closed(5) == []
                assert proc.wait(5) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
    finally:
        os.unlink(f.name)
