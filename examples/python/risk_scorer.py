"""Underwriting example: the `risk-score` job worker, written with the Python SDK.

Computes a deterministic risk score (0-100) from the application's variables:

    {"amount": 250000, "applicant": {"age": 41, "priorClaims": 0}}

and completes the job with {"riskScore": ..., "riskFactors": [...]}. The process
(../underwriting/underwriting.bpmn) issues the policy when riskScore < 70.
Run it next to skiff (or tests/fake_skiff.py): SKIFF_SOCKET=... python3 risk_scorer.py
"""

import os
import sys
from typing import List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "handler-protocol", "python"))

from skiff_handler import Handler, JobFailed  # noqa: E402

app = Handler("risk-scorer", capacity=4)


def risk_score(amount: float, age: int, prior_claims: int) -> Tuple[int, List[str]]:
    """Pure function, so a redelivered task gets the same answer."""
    score, factors = 20, []
    amount_points = min(40, int(amount // 25000))
    if amount_points:
        score += amount_points
        factors.append(f"amount +{amount_points}")
    if age < 25:
        score += 20
        factors.append("young applicant +20")
    elif age > 70:
        score += 15
        factors.append("senior applicant +15")
    claim_points = min(30, 10 * prior_claims)
    if claim_points:
        score += claim_points
        factors.append(f"prior claims +{claim_points}")
    return max(0, min(100, score)), factors


@app.job("risk-score")
def score(task):
    v = task.variables
    applicant = v.get("applicant") or {}
    if not isinstance(v.get("amount"), (int, float)) or not isinstance(applicant.get("age"), int):
        # Retrying cannot fix missing input: retries=0 raises an incident right away.
        raise JobFailed("variables 'amount' and 'applicant.age' are required", retries=0)
    prior_claims = int(applicant.get("priorClaims", 0))
    value, factors = risk_score(v["amount"], applicant["age"], prior_claims)
    return {"riskScore": value, "riskFactors": factors}


if __name__ == "__main__":
    app.run()
