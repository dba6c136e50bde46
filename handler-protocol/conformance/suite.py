"""The conformance suite's plumbing: registered SDKs, their builds, their handlers.

Every ``sdks/<id>.json`` registers one SDK (see CONTRACT.md). Each scenario of the suite is
run once per selected SDK (``SKIFF_CONFORMANCE_SDKS=python,node``; default: all). An SDK's
``build`` runs once per session, before its first scenario.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from fake_skiff import FakeSkiff  # noqa: E402

BUILD_TIMEOUT = 1800


def load_registrations() -> Dict[str, Dict[str, Any]]:
    """id -> registration, for every sdks/*.json (checked against CONTRACT.md §1)."""
    out = {}
    sdk_dir = os.path.join(HERE, "sdks")
    for name in sorted(os.listdir(sdk_dir)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(sdk_dir, name), encoding="utf-8") as f:
            reg = json.load(f)
        sdk_id = name[:-len(".json")]
        assert reg.get("id") == sdk_id, f"{name}: id must be {sdk_id!r}"
        assert isinstance(reg.get("run"), list) and reg["run"], f"{name}: run is required"
        for key in ("build", "run", "requires"):
            assert all(isinstance(a, str) for a in reg.get(key, [])), f"{name}: {key}"
        reg.setdefault("level", 1)
        reg.setdefault("env", {})
        out[sdk_id] = reg
    return out


REGISTRATIONS = load_registrations()


def selected() -> List[str]:
    wanted = os.environ.get("SKIFF_CONFORMANCE_SDKS", "").strip()
    if not wanted:
        return list(REGISTRATIONS)
    ids = [w.strip() for w in wanted.split(",") if w.strip()]
    unknown = [i for i in ids if i not in REGISTRATIONS]
    if unknown:
        raise pytest.UsageError(f"SKIFF_CONFORMANCE_SDKS: unknown SDK(s) {unknown}; "
                                f"registered: {sorted(REGISTRATIONS)}")
    return ids


_builds: Dict[str, str] = {}  # id -> "" when built, else the failure text


def build(sdk_id: str) -> None:
    """Run the SDK's build once per session; fail (not skip) the scenario if it fails."""
    reg = REGISTRATIONS[sdk_id]
    if sdk_id not in _builds:
        _builds[sdk_id] = _run_build(reg)
    if _builds[sdk_id]:
        pytest.fail(_builds[sdk_id], pytrace=False)


def _run_build(reg: Dict[str, Any]) -> str:
    if reg.get("build"):
        t0 = time.monotonic()
        try:
            p = subprocess.run(reg["build"], cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=BUILD_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"build of {reg['id']} could not run: {e}"
        out = p.stdout.decode("utf-8", "replace")
        sys.stderr.write(f"\n[conformance] build {reg['id']}: exit {p.returncode} in "
                         f"{time.monotonic() - t0:.1f}s\n")
        if p.returncode != 0:
            return f"build of {reg['id']} failed (exit {p.returncode}):\n{out[-4000:]}"
    for tool in reg.get("requires", []):
        if shutil.which(tool) is None:
            return f"{reg['id']}: {tool} is not on PATH after the build"
    return ""


def argv(reg: Dict[str, Any]) -> List[str]:
    """The run command: "{python}" is this interpreter; a relative program path is made
    absolute (other arguments stay as they are: the handler runs in the repository root)."""
    out = [sys.executable if a == "{python}" else a for a in reg["run"]]
    if os.sep in out[0] and not os.path.isabs(out[0]):
        out[0] = os.path.join(ROOT, out[0])
    return out


class HandlerProcess:
    """A conformance handler running as a subprocess, stderr kept in a file."""

    def __init__(self, reg: Dict[str, Any], socket_path: str, capacity: int,
                 mode: str = "all", extra_env: Optional[Dict[str, str]] = None) -> None:
        self._err = tempfile.TemporaryFile()
        env = dict(os.environ, **reg["env"], SKIFF_SOCKET=socket_path,
                   CONF_NAME=f"conformance-{reg['id']}", CONF_CAPACITY=str(capacity),
                   CONF_MODE=mode, PYTHONUNBUFFERED="1", **(extra_env or {}))
        self.proc = subprocess.Popen(argv(reg), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._err)

    def wait(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"handler did not exit in {timeout}s; stderr:\n{self.stderr()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode("utf-8", "replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


def level(n: int) -> Callable:
    """Decorator: the scenario belongs to contract level n (CONTRACT.md §4)."""
    def mark(fn):
        fn.conformance_level = n
        return fn
    return mark
