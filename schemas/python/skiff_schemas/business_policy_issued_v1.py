"""Generated from schemas/business.policy.issued.v1.avsc by schemas/generate.py: do not edit."""
from dataclasses_avroschema import AvroModel
from dataclasses_avroschema import types
import dataclasses
import datetime
import enum


class Currency(str, enum.Enum):
    EUR = "EUR"
    USD = "USD"
    GBP = "GBP"
    CHF = "CHF"


@dataclasses.dataclass
class PolicyIssued(AvroModel):
    """
    A policy was issued for an underwriting application. Topic business.policy.issued.v1, key: policyId. Produced by the issue-policy worker (examples/node/policy_issuer.mjs) through skiff; delivered at least once, so consumers deduplicate on policyId.
    """
    policyId: str = dataclasses.field(metadata={'doc': 'POL-<processInstanceKey>'})
    processInstanceKey: str = dataclasses.field(metadata={'doc': 'Zeebe process instance of the application (process underwriting), a decimal int64'})
    premium: types.condecimal(max_digits=12, decimal_places=2)
    currency: Currency
    riskScore: types.Int32 = dataclasses.field(metadata={'doc': '0-100, from the risk-score worker'})
    issuedAt: datetime.datetime


    class Meta:
        namespace = "dev.skiff.examples.underwriting"
