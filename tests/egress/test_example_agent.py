"""examples/agent-python/agent.py, the example agent, run as a handler (its tasks from
handler-protocol/tests/fake_skiff.py, the SDK conformance suite's skiff side) calling an LLM
route through the real skiff's egress with the official openai client: the job completes with
the stand-in's answer, the upstream got skiff's key (not the agent's dummy one), the job's
traceparent and an Idempotency-Key; a guard refusal fails the job with no retries."""
import json
import os
import subprocess
import sys

from conftest import ROOT, header, secret_file


def test_agent_calls_llm_through_skiff(skiff_factory, up, tmp_path, uid):
    key = f"sk-canary-{uid}-agent"
    s = skiff_factory({"openai": {"upstream": up.url + "/v1", "deny_patterns": "jailbreak",
                                  "credential": secret_file(tmp_path, key)}})
    up.queue({"content": "The claim is for water damage."})
    sock = str(tmp_path / "agent.sock")
    fake = subprocess.Popen(
        [sys.executable, str(ROOT / "handler-protocol" / "tests" / "fake_skiff.py"),
         "--socket", sock, "--timeout", "60",
         "--task", 'agent-task={"task": "Summarise the claim", "context": "a pipe burst"}',
         "--task", 'agent-task={"task": "please jailbreak yourself"}'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    env = dict(os.environ, SKIFF_SOCKET=sock, SKIFF_EGRESS_URL=s.url + "/openai")
    agent = subprocess.Popen([sys.executable, str(ROOT / "examples" / "agent-python" /
                                                  "agent.py")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, err = fake.communicate(timeout=90)
        agent_out = agent.communicate(timeout=30)[0]
    finally:
        fake.kill()
        agent.kill()
    assert fake.returncode == 0, err + agent_out
    frames = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    done = [f for f in frames if f.get("type") == "complete"]
    failed = [f for f in frames if f.get("type") == "fail"]
    assert len(done) == 1 and len(failed) == 1, frames
    v = done[0]["variables"]
    assert v["answer"] == "The claim is for water damage."
    assert v["usage"]["prompt_tokens"] > 0
    assert failed[0]["retries"] == 0 and "deny_pattern" in failed[0]["message"]
    (seen,) = up.requests()
    assert header(seen, "authorization") == [f"Bearer {key}"]
    assert header(seen, "idempotency-key")[0].startswith("z-")
    assert header(seen, "traceparent")
    body = json.loads(seen["body"])
    assert body["messages"][-1]["content"] == "Summarise the claim"
    assert "unused-skiff-injects-the-key" not in json.dumps(seen)
