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
//                      // (a Kafka task: its record's deadline, same attempt, no retry; only
//                      // when skiff's welcome lists feature kafka_extend, SPEC §4.3)
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
// list the feature or method: extend of a Kafka task needs `kafka_extend`, of a
// job `extend`; nothing was sent), cancelled (skiff cancelled the task,
// also while an extend waits), closed (not connected, the task's result was
// sent, or the connection was lost before the reply: the outcome is unknown),
// invalid_params (not JSON-serialisable, larger than max_frame, or a produce
// without a value). A cancelled task no longer counts against `capacity`: skiff
// may send a new one while its function runs.
//
// Batches (protocol 1.4, `batch: true`, the default): the hello lists feature `batch`, so
// skiff may send several tasks in one `tasks` frame; when skiff's welcome lists it too, the
// results that finish in one turn of the event loop leave as one `results` frame (within
// max_frame) in one write, and every 16 results leave at once, amid the batch that produced
// them (skiff refills the credit and encodes the next tasks while the rest run). Every frame a
// read brings is parsed and dispatched in turn, each before the next is parsed.
// A function that returns without a promise is answered without one (no promise per task);
// `task.signal`'s AbortController is made when a function first reads it.
//
// run() connects to $SKIFF_SOCKET (default /run/skiff/handler.sock),
// reconnecting with a backoff while skiff is not there or after a lost
// connection, and resolves once skiff sends `drain` and the tasks in flight
// are done. See handler-protocol/SPEC.md for the wire protocol.

import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { CallError, ProtocolError } from './errors.js';
import {
  DEFAULT_MAX_FRAME, FrameReader, encodeFrame, isPlainObject, resultsFrames,
} from './frames.js';
import {
  CANCEL, CANCELLED, Task, messageParams, produceParams, resultBody, runJob, runRecord,
  secretParams, taskProblem, tokenParams,
} from './task.js';

export {
  BpmnError, CallError, DeadLetter, JobFailed, ProtocolError, Retry, errorInfo,
} from './errors.js';
export { DEFAULT_MAX_FRAME, FrameReader, encodeFrame } from './frames.js';
export { Task } from './task.js';

export const PROTOCOL_VERSION = 1;
export const DEFAULT_SOCKET = '/run/skiff/handler.sock';
// Results written at once, before the turn ends, when this many are waiting (as the Python
// SDK's inline chunks): a few writes per large batch, not one per task.
const RESULTS_CHUNK = 16;

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
      // open: task id -> Task for tasks owing a result; inFlight: results
      // owed and not yet sent; running: job functions still running, cancelled ones included.
      const state = {
        sock, welcomed: false, draining: false, closed: false, inFlight: 0, running: 0,
        maxFrame: DEFAULT_MAX_FRAME, features: new Set(), methods: new Set(),
        open: new Map(), pending: new Map(), nextRef: 1,
        results: [], resultsFlush: null, // result bodies (JSON text) gathered in this turn
      };
      const reader = new FrameReader(DEFAULT_MAX_FRAME);
      let refusal = null;
      // What a task's methods call, one set per connection (not per task).
      state.session = {
        extend: (task, timeoutMs) => this.#extend(state, task, timeoutMs),
        call: (method, params) => this.#call(state, method, params),
      };
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
      // Each frame is dispatched as soon as it is parsed: the tasks of a read's first frame
      // run (and their results may leave) before its later frames are parsed.
      const onFrame = (frame) => {
        if (state.closed) return false;
        if (!state.welcomed && frame.type === null) {
          this.logger.error(`skiff sent a malformed frame (${frame.malformed}); ignoring it`);
        } else if (!state.welcomed) {
          refusal = this.#onHandshake(state, reader, frame);
          if (refusal) return false;
        } else {
          this.#onFrame(state, frame);
        }
        return true;
      };
      sock.on('data', (chunk) => {
        try {
          reader.each(chunk, onFrame);
        } catch (err) {
          this.logger.error(`skiff sent a malformed frame (${err.message}); closing`);
          sock.destroy();
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

  // Start a task: its function runs now; a result that needs no promise is queued at once.
  #runTask(state, frame) {
    const problem = taskProblem(frame);
    if (problem) {
      this.logger.error(`skiff sent a malformed task ${JSON.stringify(frame.id)}: ${problem}`);
      if (typeof frame.id === 'string' && frame.id) {
        const type = frame.source === 'kafka' ? 'nack' : 'fail';
        this.#send(state, { type, id: frame.id, message: `malformed task frame: ${problem}` });
      }
      return;
    }
    const task = new Task(frame, state.session);
    state.open.set(task.id, task);
    state.inFlight += 1;
    state.running += 1;
    const result = task.source === 'kafka'
      ? runRecord(this.topics.get(task.topic), task, this.logger)
      : runJob(this.jobs.get(task.jobType), task, this.logger);
    if (result instanceof Promise) {
      result.then((r) => this.#finish(state, task, r),
        (err) => this.#finish(state, task, null, err));
    } else {
      this.#finish(state, task, result);
    }
  }

  // A task's function is done: its result is queued unless skiff cancelled the task.
  #finish(state, task, result, err = null) {
    try {
      if (err) throw err;
      const body = resultBody(result, task, state.maxFrame);
      if (state.open.get(task.id) === task) { // else skiff cancelled it: it wants no result
        state.open.delete(task.id);
        this.#sendResult(state, body);
        this.#resultDone(state);
      }
    } catch (e) {
      this.logger.error(`could not answer task ${task.id}: ${e.message}`);
    } finally {
      state.running -= 1;
      state.settle();
    }
  }

  #cancel(state, id, reason) {
    const task = state.open.get(id);
    if (!task) return;
    state.open.delete(id);
    for (const [ref, p] of state.pending) {
      if (p.task === task) {
        state.pending.delete(ref);
        p.reject(new CallError('cancelled', `task ${id} was cancelled (${reason})`));
      }
    }
    task[CANCEL](reason);
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
    if (task.source === 'kafka' && !state.features.has('kafka_extend')) {
      throw new CallError('unsupported', 'a Kafka task cannot be extended by this skiff');
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
    if (task?.[CANCELLED]()) {
      throw new CallError('cancelled', `task ${task.id} was cancelled (${task.cancelReason})`);
    }
    if (task && state.open.get(task.id) !== task) {
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

  #send(state, frame) {
    return this.#write(state, encodeFrame(frame));
  }

  // A result's JSON text, written with the others that finish in this turn of the event loop
  // (one write, in `results` frames when skiff's welcome lists feature batch), or at once with
  // the ones before it once RESULTS_CHUNK are waiting: while a large batch runs, skiff gets
  // the first answers back, refills the handler's credit and encodes the next tasks meanwhile.
  #sendResult(state, body) {
    state.results.push(body);
    if (state.results.length >= RESULTS_CHUNK) this.#flushResults(state);
    else state.resultsFlush ??= setImmediate(() => this.#flushResults(state));
  }

  #flushResults(state) {
    if (state.resultsFlush) clearImmediate(state.resultsFlush);
    state.resultsFlush = null;
    if (state.results.length === 0) return;
    const bodies = state.results;
    state.results = [];
    this.#write(state, resultsFrames(bodies, state.maxFrame, state.features.has('batch')));
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
