// skiff handler SDK for Node.js (handler protocol v1, no dependencies).
//
//   import { Handler, BpmnError, JobFailed } from '@skiff/handler';
//   const app = new Handler({ name: 'policy-issuer', capacity: 8 });
//   app.job('issue-policy', async (task) => ({ policyId: 'P-1' }));
//   await app.run();
//
// A job function receives a task and returns an object of variables (or
// nothing) to complete the job. Throwing BpmnError throws a BPMN error,
// throwing JobFailed fails the job with explicit retries/backoff, and any other
// exception fails the job with its message. Up to `capacity` tasks run at once;
// keep job functions asynchronous so pings are answered while they run.
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

/** skiff refused the handshake (an `error` frame answered `hello`). */
export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** Encode one frame: 4-byte big-endian length, then UTF-8 JSON. */
export function encodeFrame(frame) {
  const body = Buffer.from(JSON.stringify(frame), 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

/** Incremental frame decoder: push() bytes, get whole frames back. */
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
      const frame = JSON.parse(this.#utf8.decode(this.#take(this.#need)));
      this.#need = -1;
      if (!isPlainObject(frame) || typeof frame.type !== 'string') {
        throw new Error('frame is not an object with a string "type"');
      }
      frames.push(frame);
    }
    return frames;
  }
}

const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function toTask(frame) {
  const job = isPlainObject(frame.zeebe)
    ? Object.fromEntries(Object.entries(frame.zeebe).map(([k, v]) => [camel(k), v]))
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
    frame,
  };
}

const defaultLogger = {
  info() {},
  warn: (...args) => console.error('[skiff-handler]', ...args),
  error: (...args) => console.error('[skiff-handler]', ...args),
};

export class Handler {
  constructor({
    name,
    capacity = 1,
    socketPath = process.env.SKIFF_SOCKET || DEFAULT_SOCKET,
    reconnect = true,
    backoffInitialMs = 100,
    backoffMaxMs = 5000,
    logger = defaultLogger,
  } = {}) {
    if (!name) throw new TypeError('name is required');
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError('capacity must be an integer >= 1');
    }
    Object.assign(this, {
      name, capacity, socketPath, reconnect, backoffInitialMs, backoffMaxMs, logger,
    });
    this.session = null;
    this.jobs = new Map();
  }

  /** Register `fn(task)` for a Zeebe job type. */
  job(jobType, fn) {
    this.jobs.set(jobType, fn);
    return this;
  }

  /** Serve until skiff drains this handler; rejects with ProtocolError if skiff refuses hello. */
  async run() {
    if (this.jobs.size === 0) throw new Error('register at least one job type before run()');
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
      const state = {
        sock, welcomed: false, draining: false, closed: false, inFlight: 0,
        maxFrame: DEFAULT_MAX_FRAME,
      };
      const reader = new FrameReader(DEFAULT_MAX_FRAME);
      let refusal = null;
      state.settle = () => {
        if (!state.closed || state.inFlight > 0) return;
        if (refusal) reject(refusal);
        else resolve({ welcomed: state.welcomed, drained: state.draining });
      };
      sock.on('error', (err) => this.logger.info(`socket error: ${err.message}`));
      sock.on('close', () => {
        state.closed = true;
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
          if (!state.welcomed) {
            refusal = this.#onHandshake(state, reader, frame);
            if (refusal) return;
          } else {
            this.#onFrame(state, frame);
          }
        }
      });
      this.#send(state, {
        type: 'hello', version: PROTOCOL_VERSION, name: this.name,
        capacity: this.capacity, job_types: [...this.jobs.keys()],
      });
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
    this.logger.info(`connected to skiff, session ${this.session}`);
    return null;
  }

  #onFrame(state, frame) {
    switch (frame.type) {
      case 'task':
        this.#runTask(state, frame);
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
          + (frame.id ? ` (task ${frame.id})` : ''));
        break;
      case 'pong':
      case 'reply':
        break;
      default:
        this.logger.warn(`ignoring unknown frame type ${JSON.stringify(frame.type)}`);
    }
  }

  async #runTask(state, frame) {
    state.inFlight += 1;
    try {
      this.#send(state, checked(await this.#execute(frame), state.maxFrame));
    } catch (err) {
      this.logger.error(`could not answer task ${frame.id}: ${err.message}`);
    } finally {
      state.inFlight -= 1;
      if (state.draining && state.inFlight === 0) this.#close(state);
      state.settle();
    }
  }

  async #execute(frame) {
    const id = frame.id ?? '';
    try {
      const task = toTask(frame);
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
      return { type: 'fail', id, message };
    }
  }

  #send(state, frame) {
    if (state.closed || state.sock.destroyed || !state.sock.writable) return false;
    state.sock.write(encodeFrame(frame));
    return true;
  }

  #close(state) {
    if (!state.sock.destroyed) state.sock.end(() => state.sock.destroy());
  }
}

function withVariables(frame, variables) {
  if (variables !== undefined && variables !== null) frame.variables = variables;
  return frame;
}

// Replace a result that cannot be encoded or is too large by a fail.
function checked(result, maxFrame) {
  if ('variables' in result && !isPlainObject(result.variables)) {
    return { type: 'fail', id: result.id, message: 'variables must be a plain object' };
  }
  let size;
  try {
    size = Buffer.byteLength(JSON.stringify(result), 'utf8');
  } catch (err) {
    const message = `result is not JSON-serialisable: ${err.message}`;
    return { type: 'fail', id: result.id, message };
  }
  if (size > maxFrame) {
    const message = `result frame of ${size} bytes exceeds max_frame ${maxFrame}`;
    return { type: 'fail', id: result.id, message };
  }
  return result;
}
