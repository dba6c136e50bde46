// Unit tests of the Node SDK's pieces the conformance suite sees only from outside:
// the frame reader (split and malformed bodies), structured errors, batches (1.4), tasks
// (their record, their lazy signal) and functions answered without a promise.
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

// A skiff stand-in for one connection: sends welcome (with `features`), then `tasks` as one
// tasks frame (`single`: as task frames in one write); resolves with the frames received until `count` results have come.
function serveBatch({
  features, maxFrame = 4194304, tasks, count, single = false, fn = async (task) => {
    if (task.value === 'nack') throw new Error('bad');
  },
}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skiff-node-'));
  const socketPath = path.join(dir, 's.sock');
  return new Promise((resolve) => {
    const server = net.createServer((sock) => {
      const reader = new FrameReader();
      const frames = [];
      let results = 0;
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
          results += f.type === 'results' ? f.results.length : 1;
          if (results === count) {
            sock.write(encodeFrame({ type: 'drain', deadline: Date.now() + 5000 }));
          }
        }
      });
      sock.on('close', () => {
        server.close();
        fs.rmSync(dir, { recursive: true, force: true });
        resolve(frames);
      });
    });
    server.listen(socketPath, () => {
      const app = new Handler({ name: 'unit', capacity: 8, socketPath, reconnect: false });
      app.topic('orders', fn);
      app.run();
    });
  });
}

const record = (n, value) => ({
  type: 'task', id: `k-${n}`, source: 'kafka', topic: 'orders', deadline: Date.now() + 9000,
  attempt: 1, value, kafka: { topic: 'orders', partition: 0, offset: n, key: null, headers: {} },
});

test('batch: a tasks frame is answered with one results frame, in order', async () => {
  const tasks = [record(1, 'a'), record(2, 'nack'), record(3, 'b'), { type: 'task' }];
  const frames = await serveBatch({ features: ['batch', 'cancel'], tasks, count: 3 });
  assert.deepEqual(frames[0].features, ['cancel', 'batch']);
  assert.equal(frames.length, 2);
  assert.equal(frames[1].type, 'results');
  assert.deepEqual(frames[1].results.map((r) => [r.type, r.id]),
    [['ack', 'k-1'], ['nack', 'k-2'], ['ack', 'k-3']]);
});

test('batch: without the welcome feature every result is its own frame', async () => {
  const tasks = [record(1, 'a'), record(2, 'b'), record(3, 'c')];
  const frames = await serveBatch({ features: ['cancel'], tasks, count: 3 });
  assert.deepEqual(frames.slice(1).map((f) => f.type), ['ack', 'ack', 'ack']);
});

test('batch: results frames stay within max_frame', async () => {
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
  + 'together with an async one in one results frame', async () => {
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
