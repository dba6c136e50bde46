"""Example agent: a Zeebe job worker (the repo's Python SDK) that hands each task to an LLM
through skiff's egress path, with the official `openai` client.

The job's variables: {"task": "Summarise the claim ...", "context": "... optional ..."}.
It completes the job with {"answer": "...", "model": "...", "usage": {...}}.

The handler holds no API key: `SKIFF_EGRESS_URL` (e.g. http://127.0.0.1:9470/openai) points
the client at skiff's route, and skiff injects the provider's key (from Vault), applies the
route's limits, retries, breaker and guard rules, and logs and measures the call. A dummy
key is given only because the client insists on one; skiff drops it.

    SKIFF_SOCKET=/run/skiff/handler.sock SKIFF_EGRESS_URL=http://127.0.0.1:9470/openai \\
        python3 agent.py
Environment: AGENT_JOB_TYPE (default "agent-task"), LLM_MODEL (default "gpt-4o-mini"),
AGENT_MAX_TOKENS (default 512).
"""

import os
import sys

import openai

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "handler-protocol", "python"))

from skiff_handler import Handler, JobFailed, Retry  # noqa: E402

JOB_TYPE = os.environ.get("AGENT_JOB_TYPE", "agent-task")
MODEL = os.environ.get("LLM_MODEL", "gpt-4o-mini")
MAX_TOKENS = int(os.environ.get("AGENT_MAX_TOKENS", "512"))
SYSTEM = ("You are an insurance back-office assistant. Answer the task in a few sentences, "
          "using only the context given.")

# One client for every task: it keeps its connections to skiff open. skiff retries what may
# be retried (with the Idempotency-Key below), so the client does not retry on top of it.
llm = openai.OpenAI(base_url=os.environ.get("SKIFF_EGRESS_URL", "http://127.0.0.1:9470/openai"),
                    api_key="unused-skiff-injects-the-key", max_retries=0)
app = Handler("agent-python", capacity=int(os.environ.get("AGENT_CAPACITY", "4")))


def retry_after_ms(err: openai.APIStatusError) -> int:
    value = err.response.headers.get("retry-after", "")
    return int(value) * 1000 if value.isdigit() else 5000


@app.job(JOB_TYPE)
def run_task(task):
    prompt = task.variables.get("task")
    if not isinstance(prompt, str) or not prompt.strip():
        raise JobFailed("variable 'task' (a non-empty string) is required", retries=0)
    messages = [{"role": "system", "content": SYSTEM}]
    if task.variables.get("context"):
        messages.append({"role": "user", "content": f"Context:\n{task.variables['context']}"})
    messages.append({"role": "user", "content": prompt})
    headers = {"Idempotency-Key": f"{task.id}-{task.attempt}"}
    if task.traceparent:  # skiff's span for the LLM call joins the job's trace
        headers["traceparent"] = task.traceparent
    try:
        r = llm.chat.completions.create(model=MODEL, messages=messages, max_tokens=MAX_TOKENS,
                                        extra_headers=headers,
                                        timeout=max(1.0, task.seconds_left()))
    except openai.RateLimitError as e:  # skiff's limits (or the provider's): come back later
        raise Retry(f"LLM route busy: {e.message}", backoff_ms=retry_after_ms(e))
    except openai.UnprocessableEntityError as e:  # a guard rule: retrying cannot fix it
        raise JobFailed(f"LLM request refused: {e.message}", retries=0)
    except openai.APIStatusError as e:  # circuit open, upstream 5xx: a later try may work
        raise Retry(f"LLM call failed ({e.status_code}): {e.message}",
                    backoff_ms=retry_after_ms(e))
    except openai.APIConnectionError as e:
        raise Retry(f"skiff's egress not reachable: {e}")
    usage = r.usage.model_dump() if r.usage else {}
    return {"answer": r.choices[0].message.content, "model": r.model, "usage": usage}


if __name__ == "__main__":
    app.run()
