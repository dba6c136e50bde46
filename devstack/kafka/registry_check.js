#!/usr/bin/env node
// skiff devstack: checks a Confluent-compatible schema registry with the official
// @kafkajs/confluent-schema-registry client (installed by `devstack/kafka.sh install`).
//
//   node devstack/kafka/registry_check.js [URL]     (default $SCHEMA_REGISTRY_URL)
//
// Prints one line per check ("ok NAME (ms)" or "FAIL NAME: error") and exits 1 if any failed.
// Used by devstack/kafka_selfcheck.py; the subject names are unique per run.
'use strict';

const assert = require('node:assert/strict');
const {
  SchemaRegistry,
  SchemaType,
} = require('@kafkajs/confluent-schema-registry');

const url = process.argv[2] || process.env.SCHEMA_REGISTRY_URL || 'http://127.0.0.1:28081';
const run = `${process.pid}-${Date.now()}`;
const subject = `devstack.kjs.${run}-value`;

const v1 = {
  type: 'record',
  name: 'Quote',
  namespace: 'skiff.devstack',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'amount', type: 'long' },
  ],
};
// Compatible (BACKWARD): a new optional field with a default.
const v2 = {
  ...v1,
  fields: [...v1.fields, { name: 'note', type: ['null', 'string'], default: null }],
};
// Incompatible (BACKWARD): a new field without a default.
const bad = { ...v1, fields: [...v1.fields, { name: 'currency', type: 'string' }] };

const avro = (schema) => ({ type: SchemaType.AVRO, schema: JSON.stringify(schema) });

let failed = 0;
let passed = 0;
async function check(name, fn) {
  const t0 = process.hrtime.bigint();
  try {
    await fn();
    passed += 1;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`ok ${name} (${ms.toFixed(1)} ms)`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}: ${err && err.stack ? err.stack.split('\n')[0] : err}`);
  }
}

async function main() {
  const registry = new SchemaRegistry({ host: url });
  let id1;
  let id2;
  let encoded;
  const payload = { id: 'q-1', amount: 125000 };

  await check('register v1 (GET/PUT /config/{subject}, POST /subjects/{subject}/versions)',
    async () => {
      ({ id: id1 } = await registry.register(avro(v1), { subject }));
      assert.ok(Number.isInteger(id1) && id1 > 0, `id ${id1}`);
    });
  await check('register v1 again returns the same id', async () => {
    const { id } = await registry.register(avro(v1), { subject });
    assert.equal(id, id1);
  });
  await check('encode: magic byte 0 + big-endian schema id + Avro body', async () => {
    encoded = await registry.encode(id1, payload);
    assert.equal(encoded[0], 0);
    assert.equal(encoded.readInt32BE(1), id1);
  });
  await check('decode with a fresh client (GET /schemas/ids/{id})', async () => {
    const fresh = new SchemaRegistry({ host: url });
    assert.deepEqual({ ...(await fresh.decode(encoded)) }, payload);
  });
  await check('getLatestSchemaId (GET /subjects/{subject}/versions/latest)', async () => {
    assert.equal(await registry.getLatestSchemaId(subject), id1);
  });
  await check('getRegistryId (GET /subjects/{subject}/versions/1)', async () => {
    assert.equal(await registry.getRegistryId(subject, 1), id1);
  });
  await check('getRegistryIdBySchema (POST /subjects/{subject})', async () => {
    assert.equal(await registry.getRegistryIdBySchema(subject, avro(v1)), id1);
  });
  await check('compatibility endpoint says v2 is compatible, the bad one is not', async () => {
    const ok = await registry.api.Subject.compatible({
      subject, body: { schema: JSON.stringify(v2) },
    });
    assert.equal(ok.data().is_compatible, true);
    const no = await registry.api.Subject.compatible({
      subject, body: { schema: JSON.stringify(bad) },
    });
    assert.equal(no.data().is_compatible, false);
  });
  await check('register v2 (compatible) gives a new id and version 2', async () => {
    ({ id: id2 } = await registry.register(avro(v2), { subject }));
    assert.notEqual(id2, id1);
    assert.equal(await registry.getLatestSchemaId(subject), id2);
    assert.equal(await registry.getRegistryId(subject, 2), id2);
  });
  await check('decode v1 data with the v2 reader schema (default filled in)', async () => {
    const out = await registry.decode(encoded, { [SchemaType.AVRO]: { readerSchema: v2 } });
    assert.deepEqual({ ...out }, { ...payload, note: null });
  });
  await check('register an incompatible schema fails with HTTP 409', async () => {
    await assert.rejects(registry.register(avro(bad), { subject }),
      (err) => err.status === 409 || /incompatible/i.test(String(err.message)));
  });
  await check('unknown schema id fails with HTTP 404', async () => {
    const fresh = new SchemaRegistry({ host: url });
    await assert.rejects(fresh.getSchema(987654321), (err) => err.status === 404);
  });
  await check('subject list contains the subject (GET /subjects)', async () => {
    const subjects = (await registry.api.Subject.all()).data();
    assert.ok(subjects.includes(subject), JSON.stringify(subjects));
  });

  console.log(`registry_check: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.log(`FAIL unexpected: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
