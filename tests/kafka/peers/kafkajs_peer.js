#!/usr/bin/env node
// A Kafka peer of skiff written with the official Node clients: kafkajs (the Kafka client) and
// @kafkajs/confluent-schema-registry (Confluent wire format; Avro through avsc with its default
// options). Used by tests/kafka/test_peers.py; both packages live in devstack/kafka/node_modules
// (`devstack/kafka.sh install`).
//
//   node kafkajs_peer.js consume --brokers=H:P --registry=URL --topic=T --count=N [--group=G]
//        [--timeout-ms=60000]
//     Reads the topic from the beginning in a fresh consumer group until N records arrived and
//     prints one JSON line per record: {"partition", "offset", "key", "headers", "schema_id",
//     "value"}, where value is avsc's decoding converted to the JSON form of
//     handler-protocol/SPEC.md's Avro appendix (the form skiff's tasks and produce calls use).
//
//   node kafkajs_peer.js produce --brokers=H:P --registry=URL --topic=T --input=FILE
//     FILE holds a JSON array of {"key"?, "headers"?, "value"} where value is in that same JSON
//     form; each value is converted to avsc's representation, encoded with the registry
//     client's encode() under the latest schema of <topic>-value, and produced (acks=all).
//     Prints one JSON line per record: {"partition", "offset", "schema_id"}.
//
// Conversions (avsc's representation, default options, no logical type implementations):
//   bytes / fixed          Buffer        <-> string of code points U+0000..U+00FF (latin1)
//   decimal (bytes)        Buffer        <-> "-123.45" with exactly `scale` fraction digits
//   timestamp-millis       number (ms)   <-> "2024-01-02T03:04:05.123Z"
//   uuid, enum             string        <-> string
//   ["null", X]            null | X      <-> null | X
//   other unions           plain value (avsc's "auto" union wrapping: the branch follows from
//                          the JavaScript type) <-> {"<branch name>": value}
//   records, maps, arrays  objects and arrays, converted member by member
// Diagnostics go to stderr; exit status 1 on any failure.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');

const NODE_MODULES_OWNER = path.resolve(__dirname, '..', '..', '..', 'devstack', 'kafka',
  'package.json');
const req = createRequire(NODE_MODULES_OWNER);
const { Kafka, logLevel, Partitioners } = req('kafkajs');
const { SchemaRegistry } = req('@kafkajs/confluent-schema-registry');

function args() {
  const out = { _: [] };
  for (const a of process.argv.slice(2)) {
    const m = /^--([^=]+)=(.*)$/s.exec(a);
    if (m) out[m[1]] = m[2];
    else out._.push(a);
  }
  return out;
}

function die(msg) {
  process.stderr.write(`kafkajs_peer: ${msg}\n`);
  process.exit(1);
}

// ---- the schema: named types and union branches -----------------------------------------------

const PRIMITIVES = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes',
  'string']);

class Schemas {
  constructor(root) {
    this.named = new Map();
    this.root = this.walk(root, '');
  }

  fullName(name, ns) {
    return name.includes('.') || !ns ? name : `${ns}.${name}`;
  }

  // Registers named types; returns the schema with references left as {"$ref": fullName}.
  walk(s, ns) {
    if (typeof s === 'string') {
      return PRIMITIVES.has(s) ? { type: s } : { $ref: this.fullName(s, ns) };
    }
    if (Array.isArray(s)) return { type: 'union', branches: s.map((b) => this.walk(b, ns)) };
    const t = s.type;
    if (typeof t !== 'string' || (!PRIMITIVES.has(t) && !['record', 'error', 'enum', 'fixed',
      'array', 'map'].includes(t))) {
      return this.walk(t, ns); // {"type": <schema>}
    }
    if (t === 'record' || t === 'error' || t === 'enum' || t === 'fixed') {
      const full = this.fullName(s.name, s.namespace !== undefined ? s.namespace : ns);
      const inner = full.includes('.') ? full.slice(0, full.lastIndexOf('.')) : '';
      const out = { ...s, type: t === 'error' ? 'record' : t, fullName: full };
      this.named.set(full, out);
      if (out.type === 'record') {
        out.fields = s.fields.map((f) => ({ name: f.name, schema: this.walk(f.type, inner) }));
      }
      return out;
    }
    if (t === 'array') return { type: 'array', items: this.walk(s.items, ns) };
    if (t === 'map') return { type: 'map', values: this.walk(s.values, ns) };
    return { ...s }; // a primitive, maybe with a logicalType
  }

  resolve(s) {
    if (s.$ref) {
      const t = this.named.get(s.$ref);
      if (!t) throw new Error(`unknown type ${s.$ref}`);
      return t;
    }
    return s;
  }

  // The branch name used in the JSON form of a union: primitive name, array, map, full name.
  branchName(s) {
    const r = this.resolve(s);
    return r.fullName || r.type;
  }
}

// ---- decimals -----------------------------------------------------------------------------------

function decimalFromBuffer(buf, scale) {
  let n = 0n;
  for (const b of buf) n = (n << 8n) | BigInt(b);
  if (buf.length > 0 && (buf[0] & 0x80)) n -= 1n << BigInt(8 * buf.length);
  const neg = n < 0n;
  const digits = (neg ? -n : n).toString().padStart(scale + 1, '0');
  const text = scale > 0 ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
  return (neg ? '-' : '') + text;
}

function decimalToBuffer(value, scale) {
  let s = String(value);
  const neg = s.startsWith('-');
  if (neg || s.startsWith('+')) s = s.slice(1);
  const [whole, frac = ''] = s.split('.');
  if (frac.length > scale || !/^\d+$/.test(whole) || !/^\d*$/.test(frac)) {
    throw new Error(`bad decimal ${value} for scale ${scale}`);
  }
  let n = BigInt(whole + frac.padEnd(scale, '0'));
  if (neg) n = -n;
  const bytes = []; // minimal big-endian two's complement
  for (;;) {
    bytes.unshift(Number(n & 0xffn));
    const done = (n >> 7n) === 0n || (n >> 7n) === -1n;
    n >>= 8n;
    if (done) break;
  }
  return Buffer.from(bytes);
}

// ---- avsc value -> JSON form --------------------------------------------------------------------

function jsKindMatches(s, v) {
  switch (s.type) {
    case 'null': return v === null;
    case 'boolean': return typeof v === 'boolean';
    case 'int': case 'long': case 'float': case 'double': return typeof v === 'number';
    case 'string': case 'enum': return typeof v === 'string';
    case 'bytes': case 'fixed': return Buffer.isBuffer(v);
    case 'array': return Array.isArray(v);
    case 'map': case 'record':
      return v !== null && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v);
    default: return false;
  }
}

function toJson(S, schema, v, where) {
  const s = S.resolve(schema);
  switch (s.type) {
    case 'union': {
      if (v === null) return null;
      const nonNull = s.branches.filter((b) => S.resolve(b).type !== 'null');
      const matching = nonNull.filter((b) => jsKindMatches(S.resolve(b), v));
      if (matching.length !== 1) {
        throw new Error(`${where}: cannot tell the union branch of ${JSON.stringify(v)}`);
      }
      const inner = toJson(S, matching[0], v, where);
      if (nonNull.length === 1 && s.branches.length === 2) return inner; // ["null", X]
      return { [S.branchName(matching[0])]: inner };
    }
    case 'record': {
      const out = {};
      for (const f of s.fields) out[f.name] = toJson(S, f.schema, v[f.name], `${where}.${f.name}`);
      return out;
    }
    case 'array': return v.map((x, i) => toJson(S, s.items, x, `${where}[${i}]`));
    case 'map': {
      const out = {};
      for (const [k, x] of Object.entries(v)) out[k] = toJson(S, s.values, x, `${where}.${k}`);
      return out;
    }
    case 'bytes': case 'fixed':
      if (s.logicalType === 'decimal') return decimalFromBuffer(v, s.scale || 0);
      return v.toString('latin1');
    case 'long':
      if (s.logicalType === 'timestamp-millis') return new Date(v).toISOString();
      return v;
    case 'float': case 'double':
      if (Number.isNaN(v)) return 'NaN';
      if (v === Infinity) return 'Infinity';
      if (v === -Infinity) return '-Infinity';
      return v;
    default:
      return v; // null, boolean, int, string (uuid too), enum
  }
}

// ---- JSON form -> avsc value --------------------------------------------------------------------

function fromJson(S, schema, v, where) {
  const s = S.resolve(schema);
  switch (s.type) {
    case 'union': {
      if (v === null) return null;
      const nonNull = s.branches.filter((b) => S.resolve(b).type !== 'null');
      if (nonNull.length === 1 && s.branches.length === 2) return fromJson(S, nonNull[0], v, where);
      const keys = Object.keys(v);
      const branch = keys.length === 1 && nonNull.find((b) => S.branchName(b) === keys[0]);
      if (!branch) throw new Error(`${where}: union value must be {"<branch>": value}`);
      return fromJson(S, branch, v[keys[0]], where); // avsc "auto" unions take plain values
    }
    case 'record': {
      const out = {};
      for (const f of s.fields) {
        out[f.name] = fromJson(S, f.schema, v[f.name], `${where}.${f.name}`);
      }
      return out;
    }
    case 'array': return v.map((x, i) => fromJson(S, s.items, x, `${where}[${i}]`));
    case 'map': {
      const out = {};
      for (const [k, x] of Object.entries(v)) out[k] = fromJson(S, s.values, x, `${where}.${k}`);
      return out;
    }
    case 'bytes': case 'fixed':
      if (s.logicalType === 'decimal') return decimalToBuffer(v, s.scale || 0);
      return Buffer.from(v, 'latin1');
    case 'long':
      if (s.logicalType === 'timestamp-millis' && typeof v === 'string') {
        const ms = Date.parse(v);
        if (Number.isNaN(ms)) throw new Error(`${where}: bad timestamp ${v}`);
        return ms;
      }
      return v;
    default:
      return v;
  }
}

// ---- Kafka --------------------------------------------------------------------------------------

function kafkaClient(a) {
  if (!a.brokers) die('--brokers is required');
  return new Kafka({
    clientId: 'skiff-kafkajs-peer',
    brokers: a.brokers.split(','),
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, level, log }) => {
      const { message, ...extra } = log;
      process.stderr.write(`kafkajs ${level} ${namespace}: ${message} ${JSON.stringify(extra)}\n`);
    },
  });
}

const rawSchemas = new Map();
async function rawSchema(registryUrl, id) {
  if (!rawSchemas.has(id)) {
    const r = await fetch(`${registryUrl.replace(/\/$/, '')}/schemas/ids/${id}`);
    if (!r.ok) throw new Error(`GET /schemas/ids/${id}: HTTP ${r.status}`);
    rawSchemas.set(id, new Schemas(JSON.parse((await r.json()).schema)));
  }
  return rawSchemas.get(id);
}

function headersOut(h) {
  const out = {};
  for (const [k, v] of Object.entries(h || {})) {
    out[k] = Buffer.isBuffer(v) ? v.toString('utf8') : Array.isArray(v) ? v.map(String) : v;
  }
  return out;
}

async function consume(a) {
  const registry = new SchemaRegistry({ host: a.registry });
  const count = Number(a.count);
  const timeoutMs = Number(a['timeout-ms'] || 60000);
  if (!a.topic || !(count > 0)) die('--topic and --count are required');
  const consumer = kafkaClient(a).consumer({
    groupId: a.group || `kafkajs-peer-${process.pid}-${Date.now()}`,
  });
  await consumer.connect();
  await consumer.subscribe({ topic: a.topic, fromBeginning: true });
  let seen = 0;
  let failure = null;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    failure = payload.error;
    finish();
  });
  const timer = setTimeout(() => {
    failure = new Error(`only ${seen} of ${count} records within ${timeoutMs} ms`);
    finish();
  }, timeoutMs);
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      if (seen >= count) return;
      try {
        const buf = message.value;
        const id = buf.readInt32BE(1);
        const decoded = await registry.decode(buf); // avsc, through the registry client
        const S = await rawSchema(a.registry, id);
        const line = {
          partition,
          offset: Number(message.offset),
          key: message.key === null ? null : message.key.toString('utf8'),
          headers: headersOut(message.headers),
          schema_id: id,
          value: toJson(S, S.root, decoded, '$'),
        };
        process.stdout.write(`${JSON.stringify(line)}\n`);
      } catch (e) {
        failure = e;
        finish();
        return;
      }
      seen += 1;
      if (seen >= count) finish();
    },
  });
  await done;
  clearTimeout(timer);
  await consumer.disconnect();
  if (failure) throw failure;
}

async function produce(a) {
  const registry = new SchemaRegistry({ host: a.registry });
  if (!a.topic || !a.input) die('--topic and --input are required');
  const records = JSON.parse(fs.readFileSync(a.input, 'utf8'));
  const id = await registry.getLatestSchemaId(`${a.topic}-value`);
  const S = await rawSchema(a.registry, id);
  const messages = [];
  for (const [i, r] of records.entries()) {
    const value = await registry.encode(id, fromJson(S, S.root, r.value, `$[${i}]`));
    messages.push({ key: r.key === undefined ? null : r.key, value, headers: r.headers || {} });
  }
  const producer = kafkaClient(a).producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  try {
    // One send per record, in order, so every record gets its own offset back.
    for (const m of messages) {
      const [meta] = await producer.send({ topic: a.topic, acks: -1, messages: [m] });
      if (meta.errorCode) throw new Error(`produce: error code ${meta.errorCode}`);
      process.stdout.write(`${JSON.stringify({
        partition: meta.partition, offset: Number(meta.baseOffset), schema_id: id,
      })}\n`);
    }
  } finally {
    await producer.disconnect();
  }
}

async function main() {
  const a = args();
  const mode = a._[0];
  if (mode === 'consume') await consume(a);
  else if (mode === 'produce') await produce(a);
  else die('usage: kafkajs_peer.js consume|produce --brokers=... --registry=... --topic=...');
}

main().catch((e) => die(e && e.stack ? e.stack : String(e)));
