// Unit tests of the Node SDK's pieces the conformance suite sees only from outside:
// the frame reader (split and malformed bodies) and structured errors. Run: node --test test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameReader, encodeFrame, errorInfo } from '../index.js';

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
