// Unit tests of the Node SDK's pieces the conformance suite sees only from outside:
// the frame reader (split and malformed bodies, frames one at a time), structured errors,
// batches (1.4, results in chunks while a batch runs), tasks (their record, their lazy
// signal), functions answered without a promise, extend of Kafka tasks (kafka_extend).
// Run: node --test test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import {
  DeadLetter, FrameReader, Handler, Retry, encodeFrame, errorInfo,
} from '../index.js';
import {
  CANCEL, Task, resultBody, runJob, runRecord,
} from '../task.js';

const body = (text) => {
  const b = Buffer.from(text, 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(b.length);
  return Buffer.concat([head, b]);
};

test('frames split over chunks and coalesced in one chunk are read whole', () => {
  const r = new FrameReader();
  const data = Buffer.concat([encodeFrame({ type: 'ping', ref: '1' }),
    encodeFrame({ type: 'ping', ref: 'Zürich 🚀' })]);
  const got = [];
  for (let i = 0; i < data.length; i += 3) got.push(...r.push(data.subarray(i, i + 3)));
  assert.deepEqual(got, [{ type: 'ping', ref: '1' }, { type: 'ping', ref: 'Zürich 🚀' }]);
});

test('a malformed body is a marker, the next frame still reads', () => {
  const r = new FrameReader();
  const frames = r.push(Buffer.concat([body('{not json'), body('[1]'), body('{"type":7}'),
    Buffer.from([0, 0, 0, 3, 0xed, 0xb3, 0xbf]), encodeFrame({ type: 'pong', ref: 'x' })]));
  assert.equal(frames.length, 5);
  assert.ok(frames.slice(0, 4).every((f) => f.type === null && f.malformed));
  assert.deepEqual(frames[4], { type: 'pong', ref: 'x' });
});

test('a length of 0 or above max_frame throws: the framing is lost', () => {
  assert.throws(() => new FrameReader().push(Buffer.from([0, 0, 0, 0])));
  assert.throws(() => new FrameReader(10).push(Buffer.from([0, 0, 0, 11])));
});

function inner() { throw new RangeError('deep down'); }
function outer() { inner(); }

test('errorInfo gives the stack innermost first with file, line and function', () => {
  let info;
  try { outer(); } catch (err) { info = errorInfo(err); }
  assert.equal(info.type, 'RangeError');
  assert.equal(info.message, 'deep down');
  assert.deepEqual(info.stack.slice(0, 2).map((f) => f.function), ['inner', 'outer']);
  assert.ok(info.stack[0].file.endsWith('unit.test.mjs') && info.stack[0].line > 0, info.stack[0]);
  assert.deepEqual(errorInfo('a string').stack, []);
});

// How long a socket test waits for the results it expects: past it, it fails with what came.
const WAIT_MS = 10_000;

// A skiff stand-in for one connection: sends welcome (with `features`), then `tasks` as one
// tasks frame (`single`: as task frames in one write); resolves with the frames received
// until `count` results have come; rejects (and closes the connection, so the handler's run()
// ends) when they have not come within `wait` ms. `onFrame(frame, sock)`: called for every
// other frame the handler sends (to answer an extend, say).
function serveBatch({
  features, maxFrame = 4194304, tasks, count, single = false, onFrame = () => {}, wait = WAIT_MS,
  fn = async (task) => {
    if (task.value === 'nack') throw new Error('bad');
  },
}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skiff-node-'));
  const socketPath = path.join(dir, 's.sock');
  return new Promise((resolve, reject) => {
    const frames = [];
    let timer = null;
    const server = net.createServer((sock) => {
      const reader = new FrameReader();
      let results = 0;
      timer = setTimeout(() => {
        timer = null;
        sock.destroy();
      }, wait);
      sock.on('data', (chunk) => {
        for (const f of reader.push(chunk)) {
          if (f.type === 'hello') {
            frames.push(f);
            sock.write(encodeFrame({
              type: 'welcome', version: 1, session: 's', max_frame: maxFrame, features,
            }));
            sock.write(single ? Buffer.concat(tasks.map(encodeFrame))
              : encodeFrame({ type: 'tasks', tasks }));
            continue;
          }
          frames.push(f);
          if (f.type !== 'results' && !RESULT_TYPES.has(f.type)) {
            onFrame(f, sock);
            continue;
          }
          results += f.type === 'results' ? f.results.length : 1;
          if (results === count) {
            sock.write(encodeFrame({ type: 'drain', deadline: Date.now() + 5000 }));
          }
        }
      });
      sock.on('close', () => {
        server.close();
        fs.rmSync(dir, { recursive: true, force: true });
        if (timer) {
          clearTimeout(timer);
          resolve(frames);
        } else {
          reject(new Error(`${count} results not received within ${wait} ms; the frames `
            + `that came: ${JSON.stringify(frames)}`));
        }
      });
    });
    server.listen(socketPath, () => {
      const app = new Handler({ name: 'unit', capacity: 8, socketPath, reconnect: false });
      app.topic('orders', fn);
      app.run();
    });
  });
}

const RESULT_TYPES = new Set(['ack', 'nack', 'complete', 'fail', 'bpmn_error']);
// A socket test fails past this (the stand-in gives up at WAIT_MS first, with what came).
const SOCKET_TEST = { timeout: 2 * WAIT_MS };

const record = (n, value) => ({
  type: 'task', id: `k-${n}`, source: 'kafka', topic: 'orders', deadline: Date.now() + 9000,
  attempt: 1, value, kafka: { topic: 'orders', partition: 0, offset: n, key: null, headers: {} },
});

test('batch: a tasks frame is answered with one results frame, in order', SOCKET_TEST, async () => {
  const tasks = [record(1, 'a'), record(2, 'nack'), record(3, 'b'), { type: 'task' }];
  const frames = await serveBatch({ features: ['batch', 'cancel'], tasks, count: 3 });
  assert.deepEqual(frames[0].features, ['cancel', 'batch']);
  assert.equal(frames.length, 2);
  assert.equal(frames[1].type, 'results');
  assert.deepEqual(frames[1].results.map((r) => [r.type, r.id]),
    [['ack', 'k-1'], ['nack', 'k-2'], ['ack', 'k-3']]);
});

test('batch: without the welcome feature every result is its own frame', SOCKET_TEST, async () => {
  const tasks = [record(1, 'a'), record(2, 'b'), record(3, 'c')];
  const frames = await serveBatch({ features: ['cancel'], tasks, count: 3 });
  assert.deepEqual(frames.slice(1).map((f) => f.type), ['ack', 'ack', 'ack']);
});

test('batch: results frames stay within max_frame', SOCKET_TEST, async () => {
  const tasks = Array.from({ length: 8 }, (_, i) => ({
    type: 'task', id: `k-${100 + i}`, source: 'kafka', topic: 'orders', value: 'x',
  }));
  const frames = await serveBatch({
    features: ['batch'], maxFrame: 120, tasks, count: 8, single: true,
  });
  const sizes = frames.slice(1).map((f) => Buffer.byteLength(JSON.stringify(f)));
  assert.ok(frames.length > 2, 'split into several frames');
  assert.ok(frames.slice(1).some((f) => f.type === 'results'), 'batched');
  assert.ok(sizes.every((n) => n <= 120), String(sizes));
  const ids = frames.slice(1).flatMap((f) => (f.type === 'results' ? f.results : [f]))
    .map((r) => r.id);
  assert.deepEqual(ids, tasks.map((t) => t.id));
});

test('a synchronous topic function is answered without awaiting: ack, nack on a throw, '
  + 'together with an async one in one results frame', SOCKET_TEST, async () => {
  const tasks = [record(1, 'a'), record(2, 'nack'), record(3, 'later'), record(4, 'b')];
  const frames = await serveBatch({
    features: ['batch'],
    tasks,
    count: 4,
    fn: (task) => {
      if (task.value === 'nack') throw new Retry('not now', { backoffMs: 5 });
      if (task.value === 'later') return Promise.resolve();
      return 'ignored'; // any value but a thenable acks at once
    },
  });
  const results = frames.slice(1).flatMap((f) => (f.type === 'results' ? f.results : [f]));
  assert.deepEqual(results.map((r) => [r.type, r.id, r.retry_backoff_ms]),
    [['ack', 'k-1', undefined], ['nack', 'k-2', 5], ['ack', 'k-4', undefined],
      ['ack', 'k-3', undefined]]);
  assert.equal(frames.length, 2, 'the four results in one frame');
});

test('a large batch is answered in chunks of 16 while it runs, the rest at the turn\'s end',
  SOCKET_TEST, async () => {
    const tasks = Array.from({ length: 40 }, (_, i) => record(i + 1, 'a'));
    const frames = await serveBatch({
      features: ['batch'], tasks, count: 40, fn: () => {},
    });
    assert.deepEqual(frames.slice(1).map((f) => f.results.length), [16, 16, 8]);
    assert.deepEqual(frames.slice(1).flatMap((f) => f.results.map((r) => r.id)),
      tasks.map((t) => t.id));
  });

test('FrameReader.each: frames handed over one at a time, parsed after the one before was '
  + 'handled; false stops the read; a bad length throws after the frames before it', () => {
  const r = new FrameReader();
  const seen = [];
  r.each(Buffer.concat([encodeFrame({ type: 'ping', ref: '1' }),
    encodeFrame({ type: 'ping', ref: '2' }), encodeFrame({ type: 'ping', ref: '3' })]), (f) => {
    seen.push(f.ref);
    return f.ref !== '2';
  });
  assert.deepEqual(seen, ['1', '2']);
  const later = new FrameReader();
  const before = [];
  assert.throws(() => later.each(Buffer.concat([encodeFrame({ type: 'ping', ref: '1' }),
    Buffer.from([0, 0, 0, 0])]), (f) => { before.push(f.ref); }));
  assert.deepEqual(before, ['1']);
});

test('extend of a Kafka task: sent when the welcome lists kafka_extend, its deadline becomes '
  + 'the task\'s; refused locally (unsupported, nothing sent) without it', SOCKET_TEST,
async () => {
  const seen = [];
  const fn = async (task) => {
    try {
      seen.push(['ok', await task.extend(5000), task.deadline]);
    } catch (err) {
      seen.push([err.name, err.code, err.message, task.deadline]);
    }
  };
  const answer = (f, sock) => {
    if (f.type === 'extend') {
      sock.write(encodeFrame({ type: 'reply', ref: f.ref, ok: true, result: { deadline: 4102444800000 } }));
    }
  };
  const task = { ...record(1, 'a'), deadline: 1000 };
  const frames = await serveBatch({
    features: ['batch', 'extend', 'kafka_extend'], tasks: [task], count: 1, fn, onFrame: answer,
  });
  assert.deepEqual(frames.slice(1).map((f) => f.type), ['extend', 'ack']);
  assert.equal(frames[1].id, 'k-1');
  assert.equal(frames[1].timeout_ms, 5000);
  assert.equal(typeof frames[1].ref, 'string');
  assert.deepEqual(seen, [['ok', 4102444800000, 4102444800000]]);

  seen.length = 0;
  const refused = await serveBatch({
    features: ['batch', 'extend'], tasks: [task], count: 1, fn, onFrame: answer,
  });
  assert.deepEqual(refused.slice(1).map((f) => f.type), ['ack']);
  assert.equal(seen.length, 1);
  assert.deepEqual(seen[0].slice(0, 2), ['CallError', 'unsupported']);
  assert.match(seen[0][2], /cannot be extended/);
  assert.equal(seen[0][3], 1000, 'the deadline stays');
});

test('a socket test that never gets its results fails (it does not hang)', SOCKET_TEST,
  async () => {
    const never = new Promise(() => {});
    await assert.rejects(serveBatch({
      features: ['batch'], tasks: [record(1, 'a')], count: 1, fn: () => never, wait: 200,
    }), /1 results not received within 200 ms/);
  });

test('a frame split over many reads, with the next frames in the last read, reads whole', () => {
  const big = { type: 'task', id: 'k-big', value: 'ü'.repeat(50_000) };
  const data = Buffer.concat([encodeFrame(big), encodeFrame({ type: 'ping', ref: '1' })]);
  const r = new FrameReader();
  const got = [];
  for (let i = 0; i < data.length; i += 7) got.push(...r.push(data.subarray(i, i + 7)));
  assert.deepEqual(got, [big, { type: 'ping', ref: '1' }]);
  assert.deepEqual(r.push(encodeFrame({ type: 'pong', ref: '2' })), [{ type: 'pong', ref: '2' }]);
});

const session = { extend: () => null, call: () => null };

test('a task\'s record: camelCase names, null members left at their defaults, a member '
  + 'named __proto__ sets no prototype', () => {
  const frame = JSON.parse('{"type":"task","id":"k-1","source":"kafka","topic":"t","value":1,'
    + '"kafka":{"topic":"t","partition":2,"offset":7,"key":null,"key_base64":"AAE=",'
    + '"schema_id":9,"headers":{"h":"v"},"timestamp":null,"__proto__":{"polluted":true}}}');
  const task = new Task(frame, session);
  assert.equal(task.record.keyBase64, 'AAE=');
  assert.equal(task.record.schemaId, 9);
  assert.equal(task.record.key, null);
  assert.equal(task.record.timestamp, null);
  assert.deepEqual(task.record.headers, { h: 'v' });
  assert.equal(task.record.polluted, undefined);
  assert.equal(Object.getPrototypeOf(task.record), Object.prototype);
  assert.deepEqual(task.record._Proto__, { polluted: true });
});

test('task.signal: made when read, aborted by a cancel before or after the read', () => {
  const early = new Task({ type: 'task', id: 'z-1' }, session);
  const signal = early.signal;
  assert.equal(signal.aborted, false);
  early[CANCEL]('deadline');
  assert.equal(signal.aborted, true);
  assert.equal(early.signal, signal);
  const late = new Task({ type: 'task', id: 'z-2' }, session);
  late[CANCEL]('job_gone');
  assert.equal(late.cancelReason, 'job_gone');
  assert.equal(late.signal.aborted, true);
  assert.equal(late.signal.reason.name, 'AbortError');
});

test('a thenable that is not a promise (its then() returns nothing) is adopted', async () => {
  const logger = { warn() {} };
  const task = new Task({ type: 'task', id: 'k-1', source: 'kafka', topic: 't' }, session);
  const ok = runRecord(() => ({ then(resolve) { resolve(); } }), task, logger);
  assert.ok(ok instanceof Promise);
  assert.equal(resultBody(await ok, task, 1000), '{"type":"ack","id":"k-1"}');
  const rejects = () => ({ then(_, reject) { reject(new DeadLetter('no')); } });
  const bad = runRecord(rejects, task, logger);
  assert.deepEqual(JSON.parse(resultBody(await bad, task, 1000)),
    { type: 'nack', id: 'k-1', message: 'no', dead_letter: true });
  const job = new Task({ type: 'task', id: 'z-1' }, session);
  const done = runJob(() => ({ then(resolve) { resolve({ a: 1 }); } }), job, logger);
  assert.deepEqual(JSON.parse(resultBody(await done, job, 1000)),
    { type: 'complete', id: 'z-1', variables: { a: 1 } });
});
