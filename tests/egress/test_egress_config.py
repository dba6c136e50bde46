"""Egress settings refused before skiff starts, each named by its key (`skiff config check`
and `skiff run` alike): a listener on every interface, a plaintext upstream under
security.plaintext=refuse, an unknown per-route setting, a route without upstream. The
credential's value is never printed."""
import json
import os
import subprocess

import pytest

from conftest import SKIFF_BIN

BASE = {"egress.listen": "127.0.0.1:19398", "egress.routes": ["a"],
        "egress.routes.a.upstream": "https://127.0.0.1:1/v1",
        "zeebe.address": "127.0.0.1:1"}


def run(tmp_path, cfg, *args):
    path = tmp_path / "skiff.json"
    path.write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKIFF_")}
    env["SKIFF_CONFIG"] = str(path)
    env.pop("VAULT_ADDR", None)
    return subprocess.run([str(SKIFF_BIN), *args], env=env, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("change,key", [
    ({"egress.listen": "0.0.0.0:19398"}, "egress.listen"),
    ({"security.plaintext": "refuse", "zeebe.tls": "true",
      "egress.routes.a.upstream": "http://127.0.0.1:1/v1"}, "egress.routes.a.upstream"),
    ({"egress.routes.a.bogus": "1"}, "egress.routes.a.bogus"),
    ({"egress.routes": ["a", "b"]}, "egress.routes.b"),
], ids=["every-interface", "plaintext-refused", "unknown-setting", "route-without-upstream"])
def test_bad_egress_config_refused(tmp_path, uid, change, key):
    secret = f"sk-canary-{uid}-config"
    (tmp_path / "key").write_text(secret)
    cfg = dict(BASE, **{"egress.routes.a.credential": f"file:{tmp_path / 'key'}"}, **change)
    for args in (("config", "check"), ()):
        r = run(tmp_path, cfg, *args)
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        assert key in out, out
        assert secret not in out
        assert "AddressSanitizer" not in out and "runtime error:" not in out


def test_good_egress_config(tmp_path, uid):
    secret = f"sk-canary-{uid}-config"
    (tmp_path / "key").write_text(secret)
    r = run(tmp_path, dict(BASE, **{"egress.routes.a.credential": f"file:{tmp_path / 'key'}"}),
            "config", "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert secret not in r.stdout + r.stderr
