// Unit tests of the Node SDK's pieces the conformance suite sees only from outside:
// the frame reader (split and malformed bodies), structured errors and batches (1.4).
// Run: node --test test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import {
  FrameReader, Handler, encodeFrame, errorInfo,
} from '../index.js';

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
  features, maxFrame = 4194304, tasks, count, single = false,
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
      app.topic('orders', async (task) => {
        if (task.value === 'nack') throw new Error('bad');
      });
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
