// Underwriting example: the `issue-policy` job worker, written with the Node SDK.
//
// Issues a policy for an application the risk scorer accepted. Amounts above
// 500,000 are rejected with the BPMN error POLICY_REJECTED, which the error
// boundary event of ../underwriting/underwriting.bpmn routes to "Rejected".
// Run it next to skiff (or tests/fake_skiff.py): SKIFF_SOCKET=... node policy_issuer.mjs

import { Handler, BpmnError } from '../../handler-protocol/node/index.js';

const MAX_AMOUNT = 500_000;

const app = new Handler({ name: 'policy-issuer', capacity: 8 });

app.job('issue-policy', async (task) => {
  const { amount, riskScore = 0 } = task.variables;
  if (typeof amount !== 'number') throw new Error("variable 'amount' is required");
  if (amount > MAX_AMOUNT) {
    throw new BpmnError('POLICY_REJECTED', `amount ${amount} exceeds the ${MAX_AMOUNT} limit`, {
      variables: { rejectionReason: 'amount above limit' },
    });
  }
  // Derived from the process instance, so a redelivered task issues the same policy id.
  const policyId = `POL-${task.job?.processInstanceKey ?? task.id}`;
  const premium = Math.round(amount * (0.002 + riskScore / 10000) * 100) / 100;
  return { policyId, premium };
});

await app.run();
