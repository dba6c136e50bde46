// Conformance handler of the Node SDK (handler-protocol/conformance/CONTRACT.md).
// Same job types, topics and behaviour as every SDK's. Environment: SKIFF_SOCKET,
// CONF_NAME, CONF_CAPACITY (default 2), CONF_MODE: all (default: job types and topics),
// zeebe (job types only) or kafka (topics only).

import {
  Handler, BpmnError, CallError, DeadLetter, JobFailed, Retry,
} from './index.js';
import { setTimeout as sleep } from 'node:timers/promises';

const app = new Handler({
  name: process.env.CONF_NAME || 'conformance-node',
  capacity: Number(process.env.CONF_CAPACITY || 2),
  backoffInitialMs: 50,
  backoffMaxMs: 200,
});
const MODE = process.env.CONF_MODE || 'all';
const job = MODE === 'kafka' ? () => {} : (name, fn) => app.job(name, fn);
const topic = MODE === 'zeebe' ? () => {} : (name, fn) => app.topic(name, fn);

let active = 0;
let maxActive = 0;

job('conf-complete', (task) => ({
  doubled: task.variables.n * 2,
  seen: {
    id: task.id, job_type: task.jobType, headers: task.headers,
    key: task.job.key, retries: task.job.retries,
    traceparent: task.traceparent, deadline: task.deadline, attempt: task.attempt,
  },
}));
job('conf-none', () => undefined);
job('conf-raise', (task) => {
  throw new Error(`boom ${task.variables.msg ?? ''}`);
});
job('conf-bpmn', () => {
  throw new BpmnError('RISK_TOO_HIGH', 'too risky', { variables: { reason: 'amount' } });
});
job('conf-jobfailed', () => {
  throw new JobFailed('try later', {
    retries: 2, retryBackoffMs: 5000, variables: { attempted: true },
  });
});
job('conf-async', async () => {
  await sleep(10);
  return { async: true };
});
job('conf-sleep', async (task) => {
  active += 1;
  maxActive = Math.max(maxActive, active);
  const seen = active;
  await sleep(task.variables.ms ?? 100);
  active -= 1;
  return { active_at_start: seen, max_active: maxActive };
});
job('conf-big', (task) => ({ blob: 'x'.repeat(task.variables.size) }));
job('conf-echo', (task) => ({
  echo: task.variables, key: task.job.key, process_instance_key: task.job.processInstanceKey,
}));

const callError = (err) => {
  if (!(err instanceof CallError)) throw err;
  return { code: err.code, message: err.message };
};

job('conf-extend', async (task) => {
  try {
    const deadline = await task.extend(task.variables.ms);
    return { deadline, task_deadline: task.deadline };
  } catch (err) {
    return { error: callError(err) };
  }
});
job('conf-wait-cancel', async (task) => {
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
job('conf-publish', async (task) => {
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

const callWith = async (fn, arg) => {
  try {
    return { result: await fn(arg) };
  } catch (err) {
    return { error: callError(err) };
  }
};
job('conf-secret', (task) => callWith(task.variables.via === 'handler'
  ? (r) => app.secret(r) : (r) => task.secret(r), task.variables.reference));
job('conf-token', (task) => callWith(task.variables.via === 'handler'
  ? (a) => app.token(a) : (a) => task.token(a), task.variables.audience));
job('conf-produce', async (task) => {
  const p = task.variables.params;
  const produce = task.variables.via === 'handler'
    ? (o) => app.produce(o) : (o) => task.produce(o);
  try {
    return {
      result: await produce({
        topic: p.topic, value: p.value, key: p.key, headers: p.headers,
      }),
    };
  } catch (err) {
    return { error: callError(err) };
  }
});

// Kafka topics. A topic function cannot return data, so conf.seen reports what it
// saw by producing it (the produce call is the test's window into the function).
topic('conf.seen', async (task) => {
  const r = task.record;
  await task.produce({
    topic: 'conf.seen.out',
    value: {
      id: task.id, source: task.source, topic: task.topic, value: task.value,
      attempt: task.attempt, deadline: task.deadline, traceparent: task.traceparent,
      record: {
        topic: r.topic, partition: r.partition, offset: r.offset,
        key: r.key, key_base64: r.keyBase64, headers: r.headers,
        headers_base64: r.headersBase64, timestamp: r.timestamp, schema_id: r.schemaId,
      },
    },
    key: r.key,
    headers: { 'seen-by': 'conformance' },
  });
  return { ignored: true }; // a topic function's return value is ignored: ack
});
topic('conf.ok', () => undefined);
topic('conf.raise', (task) => {
  throw new Error(`bad record ${task.value.msg ?? ''}`);
});
topic('conf.retry', (task) => {
  throw new Retry('try later', { backoffMs: task.value.ms });
});
topic('conf.retry-default', () => {
  throw new Retry('try later');
});
topic('conf.dlq', () => {
  throw new DeadLetter('poison record');
});
topic('conf.async', async () => {
  await sleep(10);
});
topic('conf.extend', async (task) => {
  // The suite's skiff does not list kafka_extend: refused locally, CallError, so a nack
  await task.extend(1000);
});
topic('conf.wait-cancel', async (task) => {
  const cancelled = await sleep(task.value.ms ?? 5000, false, { signal: task.signal })
    .catch((err) => err.name === 'AbortError');
  // Tell the test what the function saw; its ack must never be sent.
  await task.produce({
    topic: 'conf.cancelled', value: { cancelled, reason: task.cancelReason },
  });
});

await app.run();
