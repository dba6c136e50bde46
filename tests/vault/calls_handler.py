"""A handler on the Python SDK that makes the `secret` and `token` calls given as JSON on argv
(a list of [method, argument]) once connected, and prints one JSON line per call: {"ok": value}
or {"code": the CallError's code}. SKIFF_SOCKET names skiff's socket."""
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "handler-protocol" / "python"))
from skiff_handler import CallError, Handler  # noqa: E402


def main():
    calls = json.loads(sys.argv[1])
    app = Handler("vault-calls", capacity=1)
    app.job("vault-calls")(lambda task: {})
    threading.Thread(target=app.run, daemon=True).start()
    deadline = time.monotonic() + 30
    for method, arg in calls:
        while True:
            try:
                out = {"ok": getattr(app, method)(arg)}
                break
            except CallError as e:
                if e.code == "closed" and time.monotonic() < deadline:
                    time.sleep(0.05)  # not connected yet
                    continue
                out = {"code": e.code, "message": e.message}
                break
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
