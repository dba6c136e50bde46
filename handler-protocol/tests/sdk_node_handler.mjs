// Conformance test handler for the Node SDK (driven by test_sdk_conformance.py).
// Same job types and behaviour as sdk_python_handler.py. Environment:
// SKIFF_SOCKET, CONF_CAPACITY (default 2).

import { Handler, BpmnError, JobFailed } from '../node/index.js';
import { setTimeout as sleep } from 'node:timers/promises';

const app = new Handler({
  name: 'conformance-node',
  capacity: Number(process.env.CONF_CAPACITY || 2),
  backoffInitialMs: 50,
  backoffMaxMs: 200,
});

let active = 0;
let maxActive = 0;

app.job('conf-complete', (task) => ({
  doubled: task.variables.n * 2,
  seen: {
    id: task.id, job_type: task.jobType, headers: task.headers,
    key: task.job.key, retries: task.job.retries,
    traceparent: task.traceparent, deadline: task.deadline, attempt: task.attempt,
  },
}));
app.job('conf-none', () => undefined);
app.job('conf-raise', (task) => {
  throw new Error(`boom ${task.variables.msg ?? ''}`);
});
app.job('conf-bpmn', () => {
  throw new BpmnError('RISK_TOO_HIGH', 'too risky', { variables: { reason: 'amount' } });
});
app.job('conf-jobfailed', () => {
  throw new JobFailed('try later', {
    retries: 2, retryBackoffMs: 5000, variables: { attempted: true },
  });
});
app.job('conf-async', async () => {
  await sleep(10);
  return { async: true };
});
app.job('conf-sleep', async (task) => {
  active += 1;
  maxActive = Math.max(maxActive, active);
  const seen = active;
  await sleep(task.variables.ms ?? 100);
  active -= 1;
  return { active_at_start: seen, max_active: maxActive };
});
app.job('conf-big', (task) => ({ blob: 'x'.repeat(task.variables.size) }));

await app.run();
