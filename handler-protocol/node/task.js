// Tasks of the skiff handler SDK for Node.js (see index.js): the task a job or topic function
// receives, the check of a task frame, running a function to its result frame, and the
// parameters of the calls a task makes.
//
// Per task the SDK allocates the task and its record; its AbortController is made only when
// a function reads `task.signal`, and a function that returns without a promise is answered
// without one.

import {
  BpmnError, CallError, DeadLetter, JobFailed, errorInfo,
} from './errors.js';
import { isPlainObject } from './frames.js';

// Internal members of a Task, for index.js only.
export const CANCEL = Symbol('cancel');
export const CANCELLED = Symbol('cancelled');

// snake_case -> camelCase, the names skiff sends cached (a bounded cache: a frame may carry
// names nobody knows).
const CAMEL = new Map();
function camel(name) {
  let c = CAMEL.get(name);
  if (c === undefined) {
    c = name.replace(/_([a-z])/g, (_, ch) => ch.toUpperCase());
    if (CAMEL.size < 256) CAMEL.set(name, c);
  }
  return c;
}

// The members of an object with camelCase names; with `skipNull`, null members left out. (No
// camelCase name is `__proto__`: every `_` followed by a letter is replaced.)
function camelCopy(from, into, skipNull) {
  for (const name in from) {
    if (!Object.hasOwn(from, name)) continue;
    const v = from[name];
    if (!skipNull || (v !== null && v !== undefined)) into[camel(name)] = v;
  }
  return into;
}

/** What a job or topic function receives (see index.js for its members and methods). */
export class Task {
  #session; // { extend(task, ms), call(method, params) } of the connection
  #controller = null; // made on the first read of `signal`
  #cancelled = false;
  #abortReason = null;

  constructor(frame, session) {
    this.#session = session;
    this.id = frame.id;
    this.source = frame.source ?? 'zeebe';
    this.jobType = frame.job_type ?? '';
    this.variables = frame.variables ?? {};
    this.headers = frame.headers ?? {};
    this.deadline = frame.deadline ?? 0;
    this.attempt = frame.attempt ?? 1;
    this.traceparent = frame.traceparent ?? null;
    // key, processInstanceKey, bpmnProcessId, elementId, retries, worker, ...
    this.job = isPlainObject(frame.zeebe) ? camelCopy(frame.zeebe, {}, false) : null;
    this.topic = frame.topic ?? '';
    this.value = frame.value ?? null;
    // topic, partition, offset, key, keyBase64, headers, headersBase64, timestamp, schemaId
    this.record = isPlainObject(frame.kafka)
      ? camelCopy(frame.kafka, {
        key: null, keyBase64: null, headers: {}, headersBase64: {}, timestamp: null,
      }, true)
      : null;
    this.frame = frame;
    this.cancelReason = null;
  }

  /** AbortSignal, aborted when skiff cancels the task. */
  get signal() {
    if (this.#controller === null) {
      this.#controller = new AbortController();
      if (this.#cancelled) this.#controller.abort(this.#abortReason);
    }
    return this.#controller.signal;
  }

  [CANCELLED]() {
    return this.#cancelled;
  }

  // skiff cancelled the task: cancelReason set, the signal (if anyone has it) aborted.
  [CANCEL](reason) {
    this.cancelReason = reason;
    this.#cancelled = true;
    this.#abortReason = new DOMException(`skiff cancelled task ${this.id}: ${reason}`,
      'AbortError');
    if (this.#controller !== null) this.#controller.abort(this.#abortReason);
  }

  extend(timeoutMs) {
    return this.#session.extend(this, timeoutMs);
  }

  publishMessage(options) {
    return this.#session.call('publish_message', messageParams(options));
  }

  async produce(options) {
    return this.#session.call('produce', produceParams(options));
  }

  async secret(reference) {
    return (await this.#session.call('secret', secretParams(reference))).value;
  }

  async token(audience) {
    return (await this.#session.call('token', tokenParams(audience))).access_token;
  }
}

const TASK_MEMBERS = Object.entries({
  id: 'string', source: 'string', job_type: 'string', topic: 'string', deadline: 'integer',
  attempt: 'integer', traceparent: 'string', variables: 'object', headers: 'object',
  zeebe: 'object', kafka: 'object',
});
const KAFKA_MEMBERS = Object.entries({
  topic: 'string', partition: 'integer', offset: 'integer', schema_id: 'integer',
  timestamp: 'integer', headers: 'object', headers_base64: 'object',
});

function typeProblem(obj, members, where) {
  for (const [name, kind] of members) {
    const v = obj[name];
    if (v === undefined || v === null) continue;
    const ok = kind === 'integer' ? Number.isInteger(v)
      : kind === 'object' ? isPlainObject(v) : typeof v === kind;
    if (!ok) return `${where}${name} must be ${kind === 'object' ? 'an object' : `a ${kind}`}`;
  }
  return null;
}

/** Why a task frame cannot be served, or null. */
export function taskProblem(frame) {
  const problem = typeProblem(frame, TASK_MEMBERS, '');
  if (problem) return problem;
  if (!frame.id) return 'id must be a non-empty string';
  if (frame.source !== undefined && frame.source !== 'zeebe' && frame.source !== 'kafka') {
    return `unknown source ${frame.source}`;
  }
  return isPlainObject(frame.kafka) ? typeProblem(frame.kafka, KAFKA_MEMBERS, 'kafka.') : null;
}

const isThenable = (v) => v !== null && (typeof v === 'object' || typeof v === 'function')
  && typeof v.then === 'function';

function withVariables(frame, variables) {
  if (variables !== undefined && variables !== null) frame.variables = variables;
  return frame;
}

/** Run a job function: its result frame (complete, fail, bpmn_error), or a promise of it
 *  when the function returned a promise (or any thenable: Promise.resolve() adopts it). */
export function runJob(fn, task, logger) {
  const id = task.id ?? '';
  const done = (value) => {
    if (value !== undefined && value !== null && !isPlainObject(value)) {
      const kind = Array.isArray(value) ? 'an array' : typeof value;
      return jobError(new TypeError(`job function returned ${kind}, expected an object or nothing`),
        id, logger);
    }
    return withVariables({ type: 'complete', id }, value);
  };
  try {
    if (!fn) throw new JobFailed(`no handler for job type ${JSON.stringify(task.jobType)}`);
    const value = fn(task);
    if (isThenable(value)) {
      return Promise.resolve(value).then(done, (err) => jobError(err, id, logger));
    }
    return done(value);
  } catch (err) {
    return jobError(err, id, logger);
  }
}

function jobError(err, id, logger) {
  if (err instanceof BpmnError) {
    const out = { type: 'bpmn_error', id, code: err.code };
    if (err.errorMessage) out.message = err.errorMessage;
    return withVariables(out, err.variables);
  }
  if (err instanceof JobFailed) {
    const out = { type: 'fail', id, message: err.message };
    if (err.retries !== undefined && err.retries !== null) out.retries = err.retries;
    if (err.retryBackoffMs !== undefined && err.retryBackoffMs !== null) {
      out.retry_backoff_ms = err.retryBackoffMs;
    }
    return withVariables(out, err.variables);
  }
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  logger.warn(`task ${id} failed: ${err?.stack ?? message}`);
  return { type: 'fail', id, message, error: errorInfo(err) };
}

// An ack, as the JSON text of its frame (the one result of almost every record).
const ACK = Symbol('ack');

/** Run a topic function for one Kafka task: ACK when it returned (or its promise resolved),
 *  else its nack frame; a promise of either when the function returned one. */
export function runRecord(fn, task, logger) {
  const id = task.id ?? '';
  try {
    if (!fn) throw new JobFailed(`no handler for topic ${JSON.stringify(task.topic)}`);
    const value = fn(task);
    if (isThenable(value)) {
      return Promise.resolve(value).then(() => ACK, (err) => recordError(err, id, logger));
    }
    return ACK;
  } catch (err) {
    return recordError(err, id, logger);
  }
}

function recordError(err, id, logger) {
  if (err instanceof DeadLetter) {
    return { type: 'nack', id, message: err.message, dead_letter: true };
  }
  if (err instanceof JobFailed) { // Retry too
    const out = { type: 'nack', id, message: err.message };
    if (err.retryBackoffMs !== undefined && err.retryBackoffMs !== null) {
      out.retry_backoff_ms = err.retryBackoffMs;
    }
    return out;
  }
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  logger.warn(`task ${id} failed: ${err?.stack ?? message}`);
  return { type: 'nack', id, message, error: errorInfo(err) };
}

/** The JSON text of a task's result frame (ACK or a frame from runJob / runRecord), encoded
 *  once; a result that cannot be encoded or is larger than maxFrame becomes a fail (a nack,
 *  keeping its other members, for a Kafka task). */
export function resultBody(result, task, maxFrame) {
  if (result === ACK) return `{"type":"ack","id":${JSON.stringify(task.id ?? '')}}`;
  const failed = (message) => JSON.stringify(result.type === 'nack' ? { ...result, message }
    : { type: result.type === 'ack' ? 'nack' : 'fail', id: result.id, message });
  if ('variables' in result && !isPlainObject(result.variables)) {
    return failed('variables must be a plain object');
  }
  let text;
  try {
    text = JSON.stringify(result);
  } catch (err) {
    return failed(`result is not JSON-serialisable: ${err.message}`);
  }
  const size = Buffer.byteLength(text, 'utf8');
  if (size > maxFrame) return failed(`result frame of ${size} bytes exceeds max_frame ${maxFrame}`);
  return text;
}

export function messageParams({
  name, correlationKey = '', variables, timeToLiveMs = 0, messageId, tenantId,
} = {}) {
  const params = { name, correlation_key: correlationKey, time_to_live_ms: timeToLiveMs };
  const optional = { variables, message_id: messageId, tenant_id: tenantId };
  for (const [k, v] of Object.entries(optional)) if (v !== undefined && v !== null) params[k] = v;
  return params;
}

export function produceParams({ topic, value, key, headers } = {}) {
  if (value === undefined) {
    throw new CallError('invalid_params', 'produce needs a value (null is one)');
  }
  const params = { topic, value };
  if (key !== undefined && key !== null) params.key = key;
  if (headers !== undefined && headers !== null) params.headers = headers;
  return params;
}

export function secretParams(reference) {
  if (typeof reference !== 'string' || reference === '') {
    throw new CallError('invalid_params', 'secret needs a reference (vault:<mount>/<path>#<field>)');
  }
  return { reference };
}

export function tokenParams(audience) {
  if (typeof audience !== 'string' || audience === '') {
    throw new CallError('invalid_params', 'token needs an audience');
  }
  return { audience };
}
