// skiff handler SDK for Node.js (handler protocol v1.4, no dependencies).
//
//   import { Handler, BpmnError, JobFailed, Retry, DeadLetter } from '@skiff/handler';
//   const app = new Handler({ name: 'policy-issuer', capacity: 8 });
//   app.job('issue-policy', async (task) => ({ policyId: 'P-1' }));
//   app.topic('business.policy.issued.v1', async (task) => {
//     // task.value; task.record: { topic, partition, offset, key, headers, timestamp, ... }
//     if (task.value.premium.startsWith('-')) throw new DeadLetter('negative premium');
//     if (!(await searchIsUp())) throw new Retry('search down', { backoffMs: 10_000 });
//   }); // resolving acks the record; any other exception nacks it
//   await app.run();
//
// A job function receives a task and returns an object of variables (or
// nothing) to complete the job. Throwing BpmnError throws a BPMN error,
// throwing JobFailed fails the job with explicit retries/backoff, and any other
// exception fails the job with its message. A topic function receives a Kafka
// task: returning acks the record, throwing Retry (nack with retry_backoff_ms) or
// DeadLetter (nack with dead_letter) or any other exception (nack with its
// message) nacks it. Up to `capacity` tasks run at once; keep functions
// asynchronous so pings are answered while they run.
//
// Inside a job or topic function (failures reject with a CallError having a `code`):
//
//   const deadline = await task.extend(60_000); // deadline = now + 60 s; also sets task.deadline
//   task.signal;       // AbortSignal, aborted when skiff cancels the task (task.cancelReason:
//                      // 'deadline', 'job_gone'); its result is never sent
//   await task.publishMessage({ name: 'paid', correlationKey: 'order-42', variables: { a: 1 } });
//   // -> { key: '2251799813685400', tenant_id: '<default>' }
//   await task.produce({ topic: 'business.policy.indexed.v1', value: { policyId: 'P-1' },
//                        key: 'P-1', headers: { source: 'indexer' } });
//   // -> { topic, partition: 0, offset: 88, schema_id: 9 }
//
//   const password = await task.secret('vault:secret/app/db#password'); // 1.3: the value
//   const bearer = await task.token('billing-api'); // 1.3: an OAuth2 access token
//
// app.publishMessage({...}), app.produce({...}), app.secret(ref) and
// app.token(audience) do the same from outside a function, on the current
// connection. Error codes are skiff's (not_found, unavailable, rejected for
// extend; invalid_params, already_exists, unavailable, rejected for
// publishMessage; invalid_params, invalid_value, schema_not_found, unavailable,
// produce_failed for produce; forbidden, not_found, unavailable, invalid_params
// for secret and token; treat any other code as a failure too) or the SDK's
// own, raised without waiting for skiff: unsupported (skiff's welcome did not
// list the feature or method, or the task is a Kafka task, which cannot be
// extended; nothing was sent), cancelled (skiff cancelled the task,
// also while an extend waits), closed (not connected, the task's result was
// sent, or the connection was lost before the reply: the outcome is unknown),
// invalid_params (not JSON-serialisable, larger than max_frame, or a produce
// without a value). A cancelled task no longer counts against `capacity`: skiff
// may send a new one while its function runs.
//
// Batches (protocol 1.4, `batch: true`, the default): the hello lists feature `batch`, so
// skiff may send several tasks in one `tasks` frame; when skiff's welcome lists it too, the
// results that finish in one turn of the event loop leave as one `results` frame (within
// max_frame) in one write. Every frame a read brings is parsed and dispatched at once.
//
// run() connects to $SKIFF_SOCKET (default /run/skiff/handler.sock),
// reconnecting with a backoff while skiff is not there or after a lost
// connection, and resolves once skiff sends `drain` and the tasks in flight
// are done. See handler-protocol/SPEC.md for the wire protocol.

import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export const PROTOCOL_VERSION = 1;
export const DEFAULT_SOCKET = '/run/skiff/handler.sock';
export const DEFAULT_MAX_FRAME = 4 * 1024 * 1024;

/** Throw a BPMN error, caught by an error boundary event with `code`. */
export class BpmnError extends Error {
  constructor(code, message = '', { variables } = {}) {
    super(message || code);
    this.name = 'BpmnError';
    this.code = code;
    this.errorMessage = message;
    this.variables = variables;
  }
}

/** Fail the job with explicit retries (0 raises an incident) and backoff. */
export class JobFailed extends Error {
  constructor(message, { retries, retryBackoffMs, variables } = {}) {
    super(message);
    this.name = 'JobFailed';
    this.retries = retries;
    this.retryBackoffMs = retryBackoffMs;
    this.variables = variables;
  }
}

/** Kafka: nack the record; skiff retries it after `backoffMs` (undefined: its own backoff).
 *  In a job function: fail the job with that backoff. */
export class Retry extends JobFailed {
  constructor(message, { backoffMs } = {}) {
    super(message, { retryBackoffMs: backoffMs });
    this.name = 'Retry';
    this.backoffMs = backoffMs;
  }
}

/** Kafka: nack the record to the dead-letter topic at once. In a job function: fail with
 *  retries 0. */
export class DeadLetter extends JobFailed {
  constructor(message) {
    super(message, { retries: 0 });
    this.name = 'DeadLetter';
  }
}

/** skiff refused the handshake (an `error` frame answered `hello`). */
export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** An extend or call failed; `code` says why (see the top of this file). */
export class CallError extends Error {
  constructor(code, message = '') {
    super(message);
    this.name = 'CallError';
    this.code = code;
  }
}

/** Encode one frame: 4-byte big-endian length, then UTF-8 JSON. */
export function encodeFrame(frame) {
  const body = Buffer.from(JSON.stringify(frame), 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

/** The frame in a body, or a `{ type: null, malformed }` marker when the body is not UTF-8
 *  JSON holding an object with a string `type` (the framing is intact: it is skipped). */
function parseBody(body, utf8) {
  let frame;
  try {
    frame = JSON.parse(utf8.decode(body));
  } catch (err) {
    return { type: null, malformed: `not UTF-8 JSON: ${err.message}` };
  }
  if (!isPlainObject(frame) || typeof frame.type !== 'string') {
    return { type: null, malformed: 'not an object with a string "type"' };
  }
  return frame;
}

/** Incremental frame decoder: push() bytes, get whole frames back (a malformed body gives
 *  a `{ type: null, malformed }` marker; a bad length throws: the framing is lost). */
export class FrameReader {
  #chunks = [];
  #length = 0;
  #need = -1;
  #utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(maxFrame = DEFAULT_MAX_FRAME) {
    this.maxFrame = maxFrame;
  }

  #take(n) {
    const all = this.#chunks.length === 1
      ? this.#chunks[0]
      : Buffer.concat(this.#chunks, this.#length);
    this.#chunks = all.length > n ? [all.subarray(n)] : [];
    this.#length -= n;
    return all.subarray(0, n);
  }

  /** Returns the frames completed by `chunk`; throws on a malformed frame. */
  push(chunk) {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    const frames = [];
    for (;;) {
      if (this.#need < 0) {
        if (this.#length < 4) break;
        this.#need = this.#take(4).readUInt32BE(0);
        if (this.#need === 0 || this.#need > this.maxFrame) {
          throw new Error(`frame of ${this.#need} bytes (max ${this.maxFrame})`);
        }
      }
      if (this.#length < this.#need) break;
      const body = this.#take(this.#need);
      this.#need = -1;
      frames.push(parseBody(body, this.#utf8));
    }
    return frames;
  }
}

const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

const camelKeys = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [camel(k), v]));

function toTask(frame) {
  const job = isPlainObject(frame.zeebe) ? camelKeys(frame.zeebe) : null;
  const record = isPlainObject(frame.kafka)
    ? {
      key: null, keyBase64: null, headers: {}, headersBase64: {}, timestamp: null,
      ...Object.fromEntries(Object.entries(camelKeys(frame.kafka)).filter(([, v]) => v != null)),
    }
    : null;
  return {
    id: frame.id,
    source: frame.source ?? 'zeebe',
    jobType: frame.job_type ?? '',
    variables: frame.variables ?? {},
    headers: frame.headers ?? {},
    deadline: frame.deadline ?? 0,
    attempt: frame.attempt ?? 1,
    traceparent: frame.traceparent ?? null,
    job, // key, processInstanceKey, bpmnProcessId, elementId, retries, worker, ...
    topic: frame.topic ?? '',
    value: frame.value ?? null,
    record, // topic, partition, offset, key, keyBase64, headers, headersBase64, timestamp, schemaId
    frame,
    cancelReason: null,
  };
}

const TASK_MEMBERS = {
  id: 'string', source: 'string', job_type: 'string', topic: 'string', deadline: 'integer',
  attempt: 'integer', traceparent: 'string', variables: 'object', headers: 'object',
  zeebe: 'object', kafka: 'object',
};
const KAFKA_MEMBERS = {
  topic: 'string', partition: 'integer', offset: 'integer', schema_id: 'integer',
  timestamp: 'integer', headers: 'object', headers_base64: 'object',
};

function typeProblem(obj, types, where) {
  for (const [name, kind] of Object.entries(types)) {
    const v = obj[name];
    if (v === undefined || v === null) continue;
    const ok = kind === 'integer' ? Number.isInteger(v)
      : kind === 'object' ? isPlainObject(v) : typeof v === kind;
    if (!ok) return `${where}${name} must be ${kind === 'object' ? 'an object' : `a ${kind}`}`;
  }
  return null;
}

// Why a task frame cannot be served, or null.
function taskProblem(frame) {
  const problem = typeProblem(frame, TASK_MEMBERS, '');
  if (problem) return problem;
  if (!frame.id) return 'id must be a non-empty string';
  if (!['zeebe', 'kafka', undefined].includes(frame.source)) return `unknown source ${frame.source}`;
  return isPlainObject(frame.kafka) ? typeProblem(frame.kafka, KAFKA_MEMBERS, 'kafka.') : null;
}

// V8 stack lines: "    at fn (file:line:col)" or "    at file:line:col".
const STACK_LINE = /^\s*at (?:(.*?) \()?(.*?):(\d+):\d+\)?$/;

/** The structured `error` of a fail or nack frame (SPEC §4.2), innermost frame first. */
export function errorInfo(err) {
  const stack = [];
  for (const line of String(err?.stack ?? '').split('\n').slice(1)) {
    const m = STACK_LINE.exec(line);
    if (m && stack.length < 64) {
      stack.push({ file: m[2].replace(/^file:\/\//, ''), line: Number(m[3]), function: m[1] ?? '' });
    }
  }
  return {
    type: err instanceof Error ? err.name : typeof err,
    message: err instanceof Error ? err.message : String(err),
    stack,
  };
}

function messageParams({
  name, correlationKey = '', variables, timeToLiveMs = 0, messageId, tenantId,
} = {}) {
  const params = { name, correlation_key: correlationKey, time_to_live_ms: timeToLiveMs };
  const optional = { variables, message_id: messageId, tenant_id: tenantId };
  for (const [k, v] of Object.entries(optional)) if (v !== undefined && v !== null) params[k] = v;
  return params;
}

function produceParams({ topic, value, key, headers } = {}) {
  if (value === undefined) {
    throw new CallError('invalid_params', 'produce needs a value (null is one)');
  }
  const params = { topic, value };
  if (key !== undefined && key !== null) params.key = key;
  if (headers !== undefined && headers !== null) params.headers = headers;
  return params;
}

function secretParams(reference) {
  if (typeof reference !== 'string' || reference === '') {
    throw new CallError('invalid_params', 'secret needs a reference (vault:<mount>/<path>#<field>)');
  }
  return { reference };
}

function tokenParams(audience) {
  if (typeof audience !== 'string' || audience === '') {
    throw new CallError('invalid_params', 'token needs an audience');
  }
  return { audience };
}

const names = (v) => new Set(Array.isArray(v) ? v.filter((x) => typeof x === 'string') : []);

const defaultLogger = {
  info() {},
  warn: (...args) => console.error('[skiff-handler]', ...args),
  error: (...args) => console.error('[skiff-handler]', ...args),
};

export class Handler {
  #state = null; // the current session, once welcomed

  constructor({
    name,
    capacity = 1,
    socketPath = process.env.SKIFF_SOCKET || DEFAULT_SOCKET,
    reconnect = true,
    backoffInitialMs = 100,
    backoffMaxMs = 5000,
    logger = defaultLogger,
    batch = true,
  } = {}) {
    if (!name) throw new TypeError('name is required');
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError('capacity must be an integer >= 1');
    }
    Object.assign(this, {
      name, capacity, socketPath, reconnect, backoffInitialMs, backoffMaxMs, logger, batch,
    });
    this.session = null;
    this.jobs = new Map();
    this.topics = new Map();
  }

  /** Publish a Zeebe message on the current connection (same as task.publishMessage). */
  async publishMessage(options) {
    if (!this.#state) throw new CallError('closed', 'not connected to skiff');
    return this.#call(this.#state, 'publish_message', messageParams(options));
  }

  /** Write a Kafka record on the current connection (same as task.produce). */
  async produce(options) {
    if (!this.#state) throw new CallError('closed', 'not connected to skiff');
    return this.#call(this.#state, 'produce', produceParams(options));
  }

  /** Read a secret the pod may read (handler.secrets); resolves to its value. */
  async secret(reference) {
    if (!this.#state) throw new CallError('closed', 'not connected to skiff');
    return (await this.#call(this.#state, 'secret', secretParams(reference))).value;
  }

  /** An OAuth2 access token for an allowed audience (handler.token_audiences). */
  async token(audience) {
    if (!this.#state) throw new CallError('closed', 'not connected to skiff');
    return (await this.#call(this.#state, 'token', tokenParams(audience))).access_token;
  }

  /** Register `fn(task)` for a Zeebe job type. */
  job(jobType, fn) {
    this.jobs.set(jobType, fn);
    return this;
  }

  /** Register `fn(task)` for the records of a Kafka topic. */
  topic(topic, fn) {
    this.topics.set(topic, fn);
    return this;
  }

  /** Serve until skiff drains this handler; rejects with ProtocolError if skiff refuses hello. */
  async run() {
    if (this.jobs.size === 0 && this.topics.size === 0) {
      throw new Error('register at least one job type or topic before run()');
    }
    let delay = this.backoffInitialMs;
    for (;;) {
      const sock = await this.#connect();
      if (sock) {
        const { welcomed, drained } = await this.#serve(sock);
        if (drained) return;
        if (welcomed) delay = this.backoffInitialMs;
        this.logger.warn(`connection to skiff at ${this.socketPath} lost`);
      }
      if (!this.reconnect) {
        if (!sock) throw new Error(`cannot connect to skiff at ${this.socketPath}`);
        return;
      }
      await sleep(delay);
      delay = Math.min(delay * 2, this.backoffMaxMs);
    }
  }

  #connect() {
    return new Promise((resolve) => {
      const sock = net.createConnection({ path: this.socketPath });
      const onError = (err) => {
        this.logger.info(`cannot connect to skiff at ${this.socketPath}: ${err.message}`);
        resolve(null);
      };
      sock.once('error', onError);
      sock.once('connect', () => {
        sock.off('error', onError);
        resolve(sock);
      });
    });
  }

  // One session. Resolves { welcomed, drained } once the socket is closed and
  // no task of this session is still running.
  #serve(sock) {
    return new Promise((resolve, reject) => {
      // open: task id -> { task, controller } for tasks owing a result; inFlight: results
      // owed and not yet sent; running: job functions still running, cancelled ones included.
      const state = {
        sock, welcomed: false, draining: false, closed: false, inFlight: 0, running: 0,
        maxFrame: DEFAULT_MAX_FRAME, features: new Set(), methods: new Set(),
        open: new Map(), pending: new Map(), nextRef: 1,
        results: [], resultsFlush: null, // batch: result bodies gathered in this turn
      };
      const reader = new FrameReader(DEFAULT_MAX_FRAME);
      let refusal = null;
      state.settle = () => {
        if (!state.closed || state.running > 0) return;
        if (refusal) reject(refusal);
        else resolve({ welcomed: state.welcomed, drained: state.draining });
      };
      sock.on('error', (err) => this.logger.info(`socket error: ${err.message}`));
      sock.on('close', () => {
        state.closed = true;
        if (this.#state === state) this.#state = null;
        for (const p of state.pending.values()) {
          p.reject(new CallError('closed', 'connection to skiff lost before the reply'));
        }
        state.pending.clear();
        state.settle();
      });
      sock.on('data', (chunk) => {
        let frames;
        try {
          frames = reader.push(chunk);
        } catch (err) {
          this.logger.error(`skiff sent a malformed frame (${err.message}); closing`);
          sock.destroy();
          return;
        }
        for (const frame of frames) {
          if (state.closed) return;
          if (!state.welcomed && frame.type === null) {
            this.logger.error(`skiff sent a malformed frame (${frame.malformed}); ignoring it`);
          } else if (!state.welcomed) {
            refusal = this.#onHandshake(state, reader, frame);
            if (refusal) return;
          } else {
            this.#onFrame(state, frame);
          }
        }
      });
      const hello = {
        type: 'hello', version: PROTOCOL_VERSION, name: this.name, capacity: this.capacity,
      };
      if (this.jobs.size > 0) hello.job_types = [...this.jobs.keys()];
      if (this.topics.size > 0) hello.topics = [...this.topics.keys()];
      hello.features = this.batch ? ['cancel', 'batch'] : ['cancel'];
      this.#send(state, hello);
    });
  }

  #onHandshake(state, reader, frame) {
    if (frame.type === 'error') {
      state.sock.destroy();
      return new ProtocolError(`skiff refused hello: ${frame.code}: ${frame.message}`);
    }
    if (frame.type !== 'welcome') {
      this.logger.error(`expected welcome, got ${frame.type}; closing`);
      state.sock.destroy();
      return null;
    }
    state.welcomed = true;
    this.session = String(frame.session ?? '');
    if (Number.isInteger(frame.max_frame) && frame.max_frame > 0) {
      state.maxFrame = frame.max_frame;
      reader.maxFrame = frame.max_frame;
    }
    state.features = names(frame.features);
    state.methods = names(frame.methods);
    this.#state = state;
    this.logger.info(`connected to skiff, session ${this.session}`);
    return null;
  }

  #onFrame(state, frame) {
    switch (frame.type) {
      case null:
        this.logger.error(`skiff sent a malformed frame (${frame.malformed}); ignoring it`);
        break;
      case 'task':
        this.#runTask(state, frame);
        break;
      case 'tasks':
        for (const item of Array.isArray(frame.tasks) ? frame.tasks : []) {
          if (isPlainObject(item) && item.type === 'task') this.#runTask(state, item);
          else this.logger.error('skiff sent a tasks item that is not a task; ignoring it');
        }
        break;
      case 'reply': {
        const p = state.pending.get(frame.ref);
        if (!p) break;
        state.pending.delete(frame.ref);
        if (frame.ok === true) {
          p.resolve(isPlainObject(frame.result) ? frame.result : {});
        } else {
          const error = isPlainObject(frame.error) ? frame.error : {};
          p.reject(new CallError(String(error.code ?? 'rejected'), String(error.message ?? '')));
        }
        break;
      }
      case 'cancel':
        this.#cancel(state, frame.id, String(frame.reason ?? ''));
        break;
      case 'ping':
        this.#send(state, { type: 'pong', ref: frame.ref ?? '' });
        break;
      case 'drain':
        this.logger.info('skiff asks to drain; finishing tasks in flight');
        state.draining = true;
        if (state.inFlight === 0) this.#close(state);
        break;
      case 'error':
        this.logger.error(`skiff error ${frame.code}: ${frame.message}`
          + (frame.id ? ` (task ${frame.id})` : '')
          + (Number.isInteger(frame.index) ? ` (results item ${frame.index})` : ''));
        break;
      case 'pong':
        break;
      default:
        this.logger.warn(`ignoring unknown frame type ${JSON.stringify(frame.type)}`);
    }
  }

  async #runTask(state, frame) {
    const problem = taskProblem(frame);
    if (problem) {
      this.logger.error(`skiff sent a malformed task ${JSON.stringify(frame.id)}: ${problem}`);
      if (typeof frame.id === 'string' && frame.id) {
        const type = frame.source === 'kafka' ? 'nack' : 'fail';
        this.#send(state, { type, id: frame.id, message: `malformed task frame: ${problem}` });
      }
      return;
    }
    const task = toTask(frame);
    const controller = new AbortController();
    task.signal = controller.signal;
    task.extend = (timeoutMs) => this.#extend(state, task, timeoutMs);
    task.publishMessage = (options) => this.#call(state, 'publish_message', messageParams(options));
    task.produce = async (options) => this.#call(state, 'produce', produceParams(options));
    task.secret = async (reference) => (
      await this.#call(state, 'secret', secretParams(reference))).value;
    task.token = async (audience) => (
      await this.#call(state, 'token', tokenParams(audience))).access_token;
    const entry = { task, controller };
    state.open.set(task.id, entry);
    state.inFlight += 1;
    state.running += 1;
    try {
      const result = checked(await this.#execute(task), state.maxFrame);
      if (state.open.get(task.id) === entry) { // else skiff cancelled it: it wants no result
        state.open.delete(task.id);
        this.#sendResult(state, result);
        this.#resultDone(state);
      }
    } catch (err) {
      this.logger.error(`could not answer task ${frame.id}: ${err.message}`);
    } finally {
      state.running -= 1;
      state.settle();
    }
  }

  #cancel(state, id, reason) {
    const entry = state.open.get(id);
    if (!entry) return;
    state.open.delete(id);
    entry.task.cancelReason = reason;
    for (const [ref, p] of state.pending) {
      if (p.task === entry.task) {
        state.pending.delete(ref);
        p.reject(new CallError('cancelled', `task ${id} was cancelled (${reason})`));
      }
    }
    entry.controller.abort(new DOMException(`skiff cancelled task ${id}: ${reason}`, 'AbortError'));
    this.#resultDone(state);
  }

  // One owed result less (sent or cancelled).
  #resultDone(state) {
    state.inFlight -= 1;
    if (state.draining && state.inFlight === 0) this.#close(state);
  }

  async #extend(state, task, timeoutMs) {
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
      throw new RangeError(`timeoutMs must be an integer >= 1, not ${timeoutMs}`);
    }
    if (task.source === 'kafka') {
      throw new CallError('unsupported', 'a Kafka task cannot be extended');
    }
    if (!state.features.has('extend')) {
      throw new CallError('unsupported', 'skiff does not support extend');
    }
    const members = { id: task.id, timeout_ms: timeoutMs };
    const result = await this.#request(state, 'extend', members, task);
    task.deadline = result.deadline;
    return result.deadline;
  }

  async #call(state, method, params) {
    if (!state.methods.has(method)) {
      throw new CallError('unsupported', `skiff does not offer the method ${method}`);
    }
    return this.#request(state, 'call', { method, params });
  }

  // Send a frame with a fresh ref; resolves with its reply's result.
  #request(state, type, members, task = null) {
    if (state.closed) throw new CallError('closed', 'not connected to skiff');
    if (task?.signal.aborted) {
      throw new CallError('cancelled', `task ${task.id} was cancelled (${task.cancelReason})`);
    }
    if (task && state.open.get(task.id)?.task !== task) {
      throw new CallError('closed', `task ${task.id} is no longer open`);
    }
    const ref = String(state.nextRef++);
    let data;
    try {
      data = encodeFrame({ type, ref, ...members });
    } catch (err) {
      throw new CallError('invalid_params', `not JSON-serialisable: ${err.message}`);
    }
    if (data.length - 4 > state.maxFrame) {
      throw new CallError('invalid_params',
        `${type} frame of ${data.length - 4} bytes exceeds max_frame ${state.maxFrame}`);
    }
    return new Promise((resolve, reject) => {
      state.pending.set(ref, { resolve, reject, task });
      if (!this.#write(state, data)) {
        state.pending.delete(ref);
        reject(new CallError('closed', 'connection to skiff lost'));
      }
    });
  }

  async #execute(task) {
    if (task.source === 'kafka') return this.#executeRecord(task);
    const id = task.id ?? '';
    try {
      const fn = this.jobs.get(task.jobType);
      if (!fn) throw new JobFailed(`no handler for job type ${JSON.stringify(task.jobType)}`);
      const value = await fn(task);
      if (value !== undefined && value !== null && !isPlainObject(value)) {
        const kind = Array.isArray(value) ? 'an array' : typeof value;
        throw new TypeError(`job function returned ${kind}, expected an object or nothing`);
      }
      return withVariables({ type: 'complete', id }, value);
    } catch (err) {
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
      this.logger.warn(`task ${id} failed: ${err?.stack ?? message}`);
      return { type: 'fail', id, message, error: errorInfo(err) };
    }
  }

  // Run the topic function for one Kafka task: ack, or nack on an exception.
  async #executeRecord(task) {
    const id = task.id ?? '';
    try {
      const fn = this.topics.get(task.topic);
      if (!fn) throw new JobFailed(`no handler for topic ${JSON.stringify(task.topic)}`);
      await fn(task);
      return { type: 'ack', id };
    } catch (err) {
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
      this.logger.warn(`task ${id} failed: ${err?.stack ?? message}`);
      return { type: 'nack', id, message, error: errorInfo(err) };
    }
  }

  #send(state, frame) {
    return this.#write(state, encodeFrame(frame));
  }

  // A result: alone, or (welcome feature batch) gathered with the others of this turn.
  #sendResult(state, result) {
    if (!state.features.has('batch')) {
      this.#send(state, result);
      return;
    }
    state.results.push(Buffer.from(JSON.stringify(result), 'utf8'));
    state.resultsFlush ??= setImmediate(() => this.#flushResults(state));
  }

  // The gathered results as `results` frames of at most max_frame bytes, in one write.
  #flushResults(state) {
    if (state.resultsFlush) clearImmediate(state.resultsFlush);
    state.resultsFlush = null;
    const bodies = state.results;
    state.results = [];
    const out = [];
    let run = [];
    let size = RESULTS_OPEN.length + RESULTS_CLOSE.length;
    const closeRun = () => {
      if (run.length === 1) out.push(frameOf([run[0]]));
      else if (run.length > 1) out.push(frameOf([RESULTS_OPEN, ...joined(run), RESULTS_CLOSE]));
      run = [];
      size = RESULTS_OPEN.length + RESULTS_CLOSE.length;
    };
    for (const body of bodies) {
      if (run.length > 0 && size + body.length + 1 > state.maxFrame) closeRun();
      run.push(body);
      size += body.length + 1;
    }
    closeRun();
    if (out.length > 0) this.#write(state, Buffer.concat(out));
  }

  #write(state, data) {
    if (state.closed || state.sock.destroyed || !state.sock.writable) return false;
    state.sock.write(data);
    return true;
  }

  #close(state) {
    this.#flushResults(state);
    if (!state.sock.destroyed) state.sock.end(() => state.sock.destroy());
  }
}

const RESULTS_OPEN = Buffer.from('{"type":"results","results":[', 'utf8');
const RESULTS_CLOSE = Buffer.from(']}', 'utf8');
const COMMA = Buffer.from(',', 'utf8');

// The bodies with commas between them.
const joined = (bodies) => bodies.flatMap((b, i) => (i ? [COMMA, b] : [b]));

// One frame from the parts of its body.
function frameOf(parts) {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(parts.reduce((n, p) => n + p.length, 0));
  return Buffer.concat([head, ...parts]);
}

function withVariables(frame, variables) {
  if (variables !== undefined && variables !== null) frame.variables = variables;
  return frame;
}

// Replace a result that cannot be encoded or is too large by a fail (a nack,
// keeping its other members, for a Kafka task).
function checked(result, maxFrame) {
  const failed = (message) => {
    if (result.type === 'nack') return { ...result, message };
    return { type: result.type === 'ack' ? 'nack' : 'fail', id: result.id, message };
  };
  if ('variables' in result && !isPlainObject(result.variables)) {
    return failed('variables must be a plain object');
  }
  let size;
  try {
    size = Buffer.byteLength(JSON.stringify(result), 'utf8');
  } catch (err) {
    return failed(`result is not JSON-serialisable: ${err.message}`);
  }
  if (size > maxFrame) return failed(`result frame of ${size} bytes exceeds max_frame ${maxFrame}`);
  return result;
}
