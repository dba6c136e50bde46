"""Underwriting example: the `risk-score` job worker as an asyncio agent (Python SDK,
``async def`` functions served by ``run_async``), the shape of a FastAPI-style service:
the handler runs as one task of the app's event loop, next to its other coroutines.

Same scores as risk_scorer.py (it reuses its pure function). In a FastAPI app, start
``app.run_async()`` as a task in the lifespan and cancel it on shutdown.
Run it next to skiff (or tests/fake_skiff.py): SKIFF_SOCKET=... python3 risk_scorer_async.py
"""

import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "handler-protocol", "python"))
sys.path.insert(0, HERE)

from risk_scorer import risk_score  # noqa: E402
from skiff_handler import Handler, JobFailed  # noqa: E402

app = Handler("risk-scorer-async", capacity=16)


@app.job("risk-score")
async def score(task):
    v = task.variables
    applicant = v.get("applicant") or {}
    if not isinstance(v.get("amount"), (int, float)) or not isinstance(applicant.get("age"), int):
        raise JobFailed("variables 'amount' and 'applicant.age' are required", retries=0)
    await asyncio.sleep(0)  # where an agent would await its model or a service
    value, factors = risk_score(v["amount"], applicant["age"], int(applicant.get("priorClaims", 0)))
    return {"riskScore": value, "riskFactors": factors}


if __name__ == "__main__":
    asyncio.run(app.run_async())
