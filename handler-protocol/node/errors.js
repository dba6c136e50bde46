// The errors of the skiff handler SDK for Node.js (see index.js): the ones a job or topic
// function throws to choose its result, the ones the SDK raises, and errorInfo(), the
// structured `error` of a fail or nack frame.

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
