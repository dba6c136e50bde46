// Conformance test handler for the Node SDK (driven by test_sdk_conformance.py).
// Same job types and behaviour as sdk_python_handler.py. Environment:
// SKIFF_SOCKET, CONF_CAPACITY (default 2).

import { Handler, BpmnError, CallError, JobFailed } from '../node/index.js';
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

const callError = (err) => {
  if (!(err instanceof CallError)) throw err;
  return { code: err.code, message: err.message };
};

app.job('conf-extend', async (task) => {
  try {
    const deadline = await task.extend(task.variables.ms);
    return { deadline, task_deadline: task.deadline };
  } catch (err) {
    return { error: callError(err) };
  }
});
app.job('conf-wait-cancel', async (task) => {
  const cancelled = await sleep(task.variables.ms ?? 5000, false, { signal: task.signal })
    .catch((err) => err.name === 'AbortError');
  const extendError = await task.extend(1000).then(() => null, (err) => callError(err).code);
  // Tell the test what the job saw; the return value must never be sent.
  await task.publishMessage({
    name: 'cancelled',
    correlationKey: task.id,
    variables: { cancelled, reason: task.cancelReason, extend_error: extendError },
  });
  return { late: true };
});
app.job('conf-publish', async (task) => {
  const p = task.variables.params;
  const publish = task.variables.via === 'handler'
    ? (o) => app.publishMessage(o) : (o) => task.publishMessage(o);
  try {
    return {
      result: await publish({
        name: p.name,
        correlationKey: p.correlation_key,
        variables: p.variables,
        timeToLiveMs: p.time_to_live_ms,
        messageId: p.message_id,
        tenantId: p.tenant_id,
      }),
    };
  } catch (err) {
    return { error: callError(err) };
  }
});

await app.run();
