"""Recorded scenarios (scenarios/*.json): frames skiff sends, frames expected back.

A scenario file holds ``description``, optional ``level`` (CONTRACT.md §4, default 1),
``capacity`` (default 2), ``mode`` (default ``all``), ``max_frame``, ``welcome`` (members
that replace the fake skiff's defaults; ``null`` leaves one out) and ``steps``, each one of:

- ``{"task": {...}, "as": "a"}``: send a Zeebe task made by ``fake_skiff.make_task``
  (``job_type``, ``variables``, ``headers``; other members override the frame's, ``zeebe``
  members are merged); ``{"record": {...}, "as": "k"}`` the same for a Kafka task
  (``topic``, ``value``, ``key``, ``attempt``; ``kafka`` merged);
- ``{"send": frame}``: send a frame as given (not schema-checked);
  ``{"send_body": "text"}``: send a frame whose body is this text (malformed on purpose);
- ``{"expect": pattern, "as": "x"}``: the next frame matches; ``{"expect_any_order":
  [patterns]}``: the next frames match these in some order;
- ``{"reply": "x", "result": {...}}`` / ``{"reply": "x", "error": [code, message]}``: answer
  the extend or call bound as ``x``;
- ``{"silent": seconds}``: no frame arrives meanwhile;
- ``{"drain_and_exit": true}``: send ``drain``; the handler sends nothing more, closes, and
  its process exits 0.

Patterns: a frame pattern lists the members that must be there (others may be); nested
objects and arrays must match exactly. ``"@a.id"`` is a member of an earlier frame bound
with ``as`` (also inside frames to send); ``{"$absent": true}`` a member that must be
missing; ``{"$contains": "text"}`` a string containing text; ``{"$type": "string"}`` (or
integer, array, object, boolean) any value of that type; ``{"$subset": {...}}`` an object
with at least these members; ``{"$repeat": ["ab", 3]}`` the string ``"ababab"`` (in frames
to send and in patterns).
"""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Any, Dict, List

import pytest

from fake_skiff import FakeSkiff, encode, make_kafka_task, make_task
from suite import HERE, REGISTRATIONS

SCENARIO_DIR = os.path.join(HERE, "scenarios")
TYPES = {"string": str, "integer": int, "array": list, "object": dict, "boolean": bool}


def load(name: str) -> Dict[str, Any]:
    with open(os.path.join(SCENARIO_DIR, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


SCENARIOS = sorted(n[:-5] for n in os.listdir(SCENARIO_DIR) if n.endswith(".json"))


class Bindings(dict):
    def resolve(self, value: Any) -> Any:
        """Replace "@name.path" strings (recursively) by the bound frames' members."""
        if isinstance(value, str) and value.startswith("@"):
            name, *path = value[1:].split(".")
            out: Any = self[name]
            for p in path:
                out = out[int(p)] if isinstance(out, list) else out[p]
            return out
        if isinstance(value, dict) and list(value) == ["$repeat"]:
            text, times = value["$repeat"]
            return text * times
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value


def mismatch(pattern: Any, actual: Any, where: str, top: bool = False) -> str:
    """'' when actual matches pattern, else where and why it does not."""
    if isinstance(pattern, dict) and len(pattern) == 1 and next(iter(pattern)).startswith("$"):
        op, arg = next(iter(pattern.items()))
        if op == "$contains":
            ok = isinstance(actual, str) and arg in actual
        elif op == "$type":
            ok = isinstance(actual, TYPES[arg]) and not (arg == "integer"
                                                         and isinstance(actual, bool))
        elif op == "$subset":
            return mismatch(arg, actual, where, top=True)
        else:
            raise ValueError(f"unknown pattern operator {op}")
        return "" if ok else f"{where}: {actual!r} is not {op} {arg!r}"
    if isinstance(pattern, dict):
        if not isinstance(actual, dict):
            return f"{where}: expected an object, got {actual!r}"
        for k, p in pattern.items():
            if p == {"$absent": True}:
                if k in actual:
                    return f"{where}.{k}: must be absent, is {actual[k]!r}"
            elif k not in actual:
                return f"{where}.{k}: missing in {actual!r}"
            else:
                why = mismatch(p, actual[k], f"{where}.{k}")
                if why:
                    return why
        extra = set(actual) - set(pattern)
        if extra and not top:
            return f"{where}: unexpected members {sorted(extra)}"
        return ""
    if isinstance(pattern, list):
        if not isinstance(actual, list) or len(actual) != len(pattern):
            return f"{where}: expected {len(pattern)} items, got {actual!r}"
        for i, (p, a) in enumerate(zip(pattern, actual)):
            why = mismatch(p, a, f"{where}[{i}]")
            if why:
                return why
        return ""
    same = pattern == actual and type(pattern) is type(actual)
    return "" if same else f"{where}: expected {pattern!r}, got {actual!r}"


def build_task(spec: Dict[str, Any]) -> Dict[str, Any]:
    spec = copy.deepcopy(spec)
    zeebe = spec.pop("zeebe", {})
    frame = make_task(spec.pop("job_type"), spec.pop("variables", None), spec.pop("headers", None))
    frame["zeebe"].update(zeebe)
    frame.update(spec)
    return frame


def build_record(spec: Dict[str, Any]) -> Dict[str, Any]:
    spec = copy.deepcopy(spec)
    kafka = spec.pop("kafka", {})
    frame = make_kafka_task(spec.pop("topic"), spec.pop("value", None), key=spec.pop("key", "k-1"),
                            attempt=spec.pop("attempt", 1))
    frame["kafka"].update(kafka)
    frame.update(spec)
    return frame


def run_step(conn, proc, step: Dict[str, Any], bound: Bindings) -> None:
    if "task" in step or "record" in step:
        spec = bound.resolve(step.get("task") or step.get("record"))
        frame = build_task(spec) if "task" in step else build_record(spec)
        bound[step.get("as", "_")] = frame
        conn.send(frame, validate=False)
    elif "send" in step:
        conn.send(bound.resolve(step["send"]), validate=False)
    elif "send_body" in step:
        body = step["send_body"].encode("utf-8", "surrogatepass")
        conn.send_raw(len(body).to_bytes(4, "big") + body)
    elif "expect" in step:
        frame = conn.recv()
        why = mismatch(bound.resolve(step["expect"]), frame, "frame", top=True)
        assert not why, f"{why}\nstderr:\n{proc.stderr()}"
        bound[step.get("as", "_")] = frame
    elif "expect_any_order" in step:
        expect_any_order(conn, proc, bound.resolve(step["expect_any_order"]))
    elif "reply" in step:
        ref = bound[step["reply"]]["ref"]
        error = step.get("error")
        conn.reply(ref, bound.resolve(step.get("result")), tuple(error) if error else None)
    elif "silent" in step:
        with pytest.raises(TimeoutError):
            frame = conn.recv(timeout=step["silent"])
            pytest.fail(f"unexpected frame {frame}")
    elif step.get("drain_and_exit"):
        conn.send({"type": "drain", "deadline": int(time.time() * 1000) + 10000})
        assert conn.wait_closed(10) == []
        assert proc.wait() == 0, proc.stderr()
    else:
        raise ValueError(f"unknown step {step}")


def expect_any_order(conn, proc, patterns: List[Any]) -> None:
    frames = [conn.recv() for _ in patterns]
    left = list(frames)
    for p in patterns:
        hit = next((f for f in left if not mismatch(p, f, "frame", top=True)), None)
        assert hit is not None, (f"no frame matches {p}\namong {frames}\n"
                                 f"stderr:\n{proc.stderr()}")
        left.remove(hit)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_recorded(scenario, sdk, spawn):
    sc = load(scenario)
    if REGISTRATIONS[sdk]["level"] < sc.get("level", 1):
        pytest.skip(f"{sdk} implements contract level {REGISTRATIONS[sdk]['level']}")
    with FakeSkiff(max_frame=sc.get("max_frame", 4 * 1024 * 1024)) as skiff:
        proc = spawn(skiff.path, capacity=sc.get("capacity", 2), mode=sc.get("mode", "all"))
        conn = skiff.accept()
        welcome = sc.get("welcome", {})
        conn.handshake(**{k: welcome[k] for k in ("features", "methods") if k in welcome})
        bound = Bindings(hello=conn.hello)
        for i, step in enumerate(sc["steps"]):
            try:
                run_step(conn, proc, step, bound)
            except (AssertionError, TimeoutError) as e:
                raise AssertionError(f"{scenario} step {i} {json.dumps(step)[:200]}: {e}\n"
                                     f"stderr:\n{proc.stderr()}") from None
        conn.close()


def test_every_scenario_has_a_description():
    for name in SCENARIOS:
        sc = load(name)
        assert sc.get("description") and sc.get("steps"), name
        assert sc["steps"][-1] == {"drain_and_exit": True} or sc.get("ends_open"), name


def test_pattern_matching_rejects_what_it_should():
    """The matcher itself: a scenario that cannot fail would prove nothing."""
    assert mismatch({"type": "ack"}, {"type": "ack", "id": "1"}, "f", top=True) == ""
    assert mismatch({"v": {"a": 1}}, {"v": {"a": 1, "b": 2}}, "f", top=True)
    assert mismatch({"n": 1}, {"n": 1.0}, "f", top=True)
    assert mismatch({"n": 1}, {"n": True}, "f", top=True)
    assert mismatch({"x": {"$absent": True}}, {"x": None}, "f", top=True)
    assert mismatch({"m": {"$contains": "boom"}}, {"m": "a boom"}, "f", top=True) == ""
    assert mismatch({"m": {"$type": "integer"}}, {"m": False}, "f", top=True)
    assert mismatch([1, 2], [2, 1], "f")
    b = Bindings(a={"id": "z-1", "l": [{"k": "v"}]})
    assert b.resolve({"id": "@a.id", "x": ["@a.l.0.k"], "r": {"$repeat": ["ab", 2]}}) == {
        "id": "z-1", "x": ["v"], "r": "abab"}
