"""The route's API key from the real OpenBao (a `vault:` reference read after a Kubernetes auth
login), injected into every call; rotated in OpenBao while skiff runs, the next calls carry the
new key, with no restart. Neither key shows in skiff's log, /metrics or any response."""
import httpx

from conftest import assert_no_secret, header, oai, wait_until
from test_egress_guard import vault_config


def test_key_from_openbao_rotated_mid_run(skiff_factory, up, openbao, tmp_path, uid):
    old, new = f"sk-canary-{uid}-bao-old", f"sk-canary-{uid}-bao-new"
    openbao.put(f"skiff/llm-{uid}", api_key=old)
    jwt = tmp_path / "sa-token"
    openbao.jwt(jwt)
    s = skiff_factory({"openai": {"upstream": up.url + "/v1",
                                  "credential": f"vault:secret/skiff/llm-{uid}#api_key"}},
                      **vault_config(openbao, jwt))
    c = oai(s, "openai")
    responses = []
    wait_until(lambda: httpx.get(s.url + "/openai/models").status_code == 200, timeout=30,
               what="the key read from OpenBao")
    up.reset()
    r = c.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "before"}])
    responses.append(r.http_response.text)
    assert header(up.requests()[-1], "authorization") == [f"Bearer {old}"]
    pid = s.proc.pid

    openbao.put(f"skiff/llm-{uid}", api_key=new)

    def sent_new():
        r = httpx.get(s.url + "/openai/models")
        responses.append(r.text)
        assert r.status_code == 200
        return header(up.requests()[-1], "authorization") == [f"Bearer {new}"]

    wait_until(sent_new, timeout=30, interval=0.2, what="a call with the rotated key")
    for _ in range(3):  # and every call after it
        assert sent_new()
    assert s.proc.poll() is None and s.proc.pid == pid
    auths = [header(x, "authorization") for x in up.requests()]
    assert all(a in ([f"Bearer {old}"], [f"Bearer {new}"]) for a in auths)
    assert_no_secret(s, old, new, extra=responses)
