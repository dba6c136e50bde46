// Underwriting example: the `issue-policy` job worker, written with the Node SDK.
//
// Issues a policy for an application the risk scorer accepted. Amounts above
// 500,000 are rejected with the BPMN error POLICY_REJECTED, which the error
// boundary event of ../underwriting/underwriting.bpmn routes to "Rejected".
//
// Every issued policy is announced on Kafka: the business event
// business.policy.issued.v1 (Avro, schema ../../schemas/business.policy.issued.v1.avsc,
// registered as subject business.policy.issued.v1-value), produced through skiff
// before the job completes. If Kafka does not confirm it, the job fails and Zeebe
// retries it; a retry may announce the same policy twice (at-least-once), so
// consumers deduplicate on policyId (see ../python/policy_notifier.py).
//
// Run it next to skiff with a Kafka producer (kafka.brokers, schema_registry.url)
// or next to tests/fake_skiff.py: SKIFF_SOCKET=... node policy_issuer.mjs

import { Handler, BpmnError } from '../../handler-protocol/node/index.js';

const MAX_AMOUNT = 500_000;
const POLICY_ISSUED_TOPIC = 'business.policy.issued.v1';

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
  await task.produce({
    topic: POLICY_ISSUED_TOPIC,
    key: policyId, // the key picks the partition: a policy's events stay in order
    value: {
      policyId,
      processInstanceKey: String(task.job?.processInstanceKey ?? ''),
      premium: premium.toFixed(2), // Avro decimal(12, 2), written exactly from its text
      currency: 'EUR',
      riskScore: Math.round(riskScore),
      issuedAt: Date.now(), // timestamp-millis
    },
    // The job's traceparent: skiff's send span, and the consumer's task, continue its trace.
    headers: { source: 'policy-issuer', ...(task.traceparent && { traceparent: task.traceparent }) },
  });
  return { policyId, premium };
});

await app.run();
