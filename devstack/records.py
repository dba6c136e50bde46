"""Read the Zeebe engine's record stream written by devstack/zeebe.sh (Python 3 stdlib only).

The broker's built-in DebugLogExporter writes every record it exports (commands, events and
rejections of every value type: JOB, INCIDENT, PROCESS_INSTANCE, VARIABLE, DEPLOYMENT, ...)
as one JSON object per line to ``records.jsonl`` in the broker's run dir. A record looks like::

    {"partitionId": 1, "position": 19, "sourceRecordPosition": 4, "key": 2251799813685257,
     "timestamp": 1795478262449, "recordType": "EVENT", "valueType": "JOB",
     "intent": "CREATED", "rejectionType": "NULL_VAL", "rejectionReason": "",
     "brokerVersion": "8.5.8", "recordVersion": 1, "authorizations": {...},
     "value": {"type": "devstack-smoke", "retries": 3, "processInstanceKey": ..., ...}}

Keys are JSON numbers (Python ints). The file starts empty at each ``zeebe.sh start``.

Typical use in a test::

    import records
    mark = records.end_offset()                  # ignore what happened before
    ...                                          # make the engine do something
    rec = records.wait_for(value_type="JOB", intent="COMPLETED",
                           since_offset=mark, processInstanceKey=pik, timeout=10)

Command line (debugging): ``python3 devstack/records.py [-f] [--type JOB] [--intent CREATED]``.
"""

import json
import os
import sys
import time

__all__ = [
    "default_path", "end_offset", "read", "matches", "records", "wait_for", "wait_for_count",
    "summary", "Stream",
]


def default_path():
    """Where zeebe.sh writes the stream, from the same settings zeebe.sh uses."""
    explicit = os.environ.get("SKIFF_ZEEBE_RECORDS")
    if explicit:
        return explicit
    run = os.environ.get("SKIFF_ZEEBE_RUN_DIR")
    if not run:
        base = os.environ.get("SKIFF_RUN_DIR") or os.path.join(
            os.environ.get("TMPDIR") or "/tmp", "skiff-devstack-%d" % os.getuid())
        run = os.path.join(base, "zeebe-%s" % os.environ.get("SKIFF_ZEEBE_PORT", "26500"))
    return os.path.join(run, "records.jsonl")


def end_offset(path=None):
    """Current end of the stream (bytes): pass it as since_offset to see only newer records."""
    try:
        return os.path.getsize(path or default_path())
    except FileNotFoundError:
        return 0


def read(path=None, since_offset=0):
    """Complete records from byte offset since_offset on: returns (list of dicts, next offset).

    A line still being written is left for the next call. If the file is shorter than
    since_offset (the broker was restarted), reading starts over from 0.
    """
    path = path or default_path()
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return [], since_offset
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < since_offset:
            since_offset = 0
        f.seek(since_offset)
        data = f.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], since_offset
    out = []
    for line in data[:end].split(b"\n"):
        line = line.strip()
        if line.startswith(b"{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # not a record (should not happen: log4j2.xml only lets JSON through)
    return out, since_offset + end + 1


def _one_of(want, got):
    if want is None:
        return True
    if isinstance(want, str):
        return got == want
    return got in want


def matches(rec, value_type=None, intent=None, record_type=None, key=None, **value):
    """True if rec has this valueType/intent/recordType (a string or a collection of strings),
    this record key, and these fields in rec["value"] (e.g. processInstanceKey=..., type=...)."""
    if not (_one_of(value_type, rec.get("valueType")) and _one_of(intent, rec.get("intent"))
            and _one_of(record_type, rec.get("recordType"))):
        return False
    if key is not None and rec.get("key") != key:
        return False
    v = rec.get("value") or {}
    return all(k in v and v[k] == want for k, want in value.items())


def records(path=None, value_type=None, intent=None, record_type=None, since_offset=0,
            pred=None, **value):
    """All complete records so far that match the filters (see matches) and pred(rec)."""
    recs, _ = read(path, since_offset)
    return [r for r in recs
            if matches(r, value_type, intent, record_type, **value) and (pred is None or pred(r))]


def wait_for_count(count, pred=None, timeout=10.0, path=None, since_offset=0, interval=0.05,
                   value_type=None, intent=None, record_type=None, **value):
    """Wait until `count` records match; return the first `count` of them.
    Raises TimeoutError (with a summary of the latest records) when they do not show up."""
    path = path or default_path()
    deadline = time.monotonic() + timeout
    offset, found, seen = since_offset, [], []
    while True:
        recs, offset = read(path, offset)
        seen.extend(recs)
        del seen[:-20]
        for r in recs:
            if matches(r, value_type, intent, record_type, **value) and (pred is None or pred(r)):
                found.append(r)
                if len(found) >= count:
                    return found
        if time.monotonic() >= deadline:
            want = {k: v for k, v in dict(value_type=value_type, intent=intent,
                                          record_type=record_type, **value).items()
                    if v is not None}
            raise TimeoutError(
                "%d of %d records matching %s%s within %.1fs in %s; latest records:\n  %s" % (
                    len(found), count, want, " and a predicate" if pred else "", timeout, path,
                    "\n  ".join(summary(r) for r in seen) or "(none)"))
        time.sleep(interval)


def wait_for(pred=None, timeout=10.0, path=None, since_offset=0, interval=0.05, **filters):
    """Wait for the first record matching pred(rec) and the filters of matches(); return it."""
    return wait_for_count(1, pred, timeout, path, since_offset, interval, **filters)[0]


def summary(rec):
    """One short line describing a record."""
    v = rec.get("value") or {}
    extra = []
    for k in ("type", "bpmnElementType", "elementId", "bpmnProcessId", "processInstanceKey",
              "retries", "errorType", "errorMessage", "name"):
        if k in v and v[k] not in ("", None):
            extra.append("%s=%s" % (k, v[k]))
    rej = ""
    if rec.get("recordType") == "COMMAND_REJECTION":
        rej = " %s(%s)" % (rec.get("rejectionType"), rec.get("rejectionReason"))
    return "%s %s %s %s key=%s%s %s" % (
        rec.get("position"), rec.get("recordType"), rec.get("valueType"), rec.get("intent"),
        rec.get("key"), rej, " ".join(extra))


class Stream:
    """A cursor over the stream: new() returns records written since the last call."""

    def __init__(self, path=None, from_start=False):
        self.path = path or default_path()
        self.offset = 0 if from_start else end_offset(self.path)

    def mark(self):
        """Skip everything written so far."""
        self.offset = end_offset(self.path)
        return self.offset

    def new(self):
        recs, self.offset = read(self.path, self.offset)
        return recs

    def wait_for(self, pred=None, timeout=10.0, **filters):
        """Like wait_for() from the cursor on; the cursor does not move."""
        return wait_for(pred, timeout, self.path, self.offset, **filters)


def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="print the Zeebe record stream")
    ap.add_argument("--path", default=None)
    ap.add_argument("--type", dest="value_type")
    ap.add_argument("--intent")
    ap.add_argument("--json", action="store_true", help="print records as JSON lines")
    ap.add_argument("-f", "--follow", action="store_true")
    a = ap.parse_args(argv)
    offset = 0
    try:
        while True:
            recs, offset = read(a.path, offset)
            for r in recs:
                if matches(r, a.value_type, a.intent):
                    print(json.dumps(r) if a.json else summary(r), flush=True)
            if not a.follow:
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
