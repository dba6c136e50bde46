// Good and bad schema pairs through the gate's rules (compat.mjs), and the whole gate
// (check.mjs) on a scratch git repository with a previous and a new commit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkChange } from '../compat.mjs';

const CHECK = join(dirname(fileURLToPath(import.meta.url)), '..', 'check.mjs');
const base = [
  { name: 'policyId', type: 'string' },
  { name: 'riskScore', type: 'int' },
];
const schema = (fields, extra = {}) =>
  JSON.stringify({ type: 'record', name: 'PolicyIssued', namespace: 'dev.skiff.t', fields, ...extra });
const OLD = schema(base);
const withNote = [...base, { name: 'note', type: ['null', 'string'], default: null }];

// [case, new schema, old version, new version, expected problem (substring) or null]
const CASES = [
  ['optional field with a default, MINOR', schema(withNote), '1.0.0', '1.1.0', null],
  ['optional field with a default, MAJOR', schema(withNote), '1.0.0', '2.0.0', 'compatible change bumps MAJOR'],
  ['doc only, PATCH', schema(base, { doc: 'issued' }), '1.0.0', '1.0.1', null],
  ['changed without a bump', schema(base, { doc: 'issued' }), '1.2.0', '1.2.0', 'is not above'],
  ['version goes down', schema(withNote), '1.2.0', '1.1.9', 'is not above'],
  ['removed field, MINOR', schema(base.slice(0, 1)), '1.0.0', '1.1.0', 'not FORWARD'],
  ['removed field, MAJOR', schema(base.slice(0, 1)), '1.0.0', '2.0.0', null],
  ['renamed field, MINOR', schema([base[0], { name: 'score', type: 'int' }]), '1.0.0', '1.1.0', 'not BACKWARD'],
  ['renamed field, MAJOR', schema([base[0], { name: 'score', type: 'int' }]), '1.0.0', '2.0.0', null],
  ['changed type, PATCH', schema([base[0], { name: 'riskScore', type: 'string' }]), '1.0.0', '1.0.1', 'not BACKWARD'],
  ['required field without default, MINOR', schema([...base, { name: 'x', type: 'long' }]), '1.0.0', '1.1.0', 'not BACKWARD'],
  ['int promoted to long, MINOR', schema([base[0], { name: 'riskScore', type: 'long' }]), '1.0.0', '1.1.0', 'not FORWARD'],
  ['renamed record, MINOR', OLD.replace('PolicyIssued', 'Issued'), '1.0.0', '1.1.0', 'not BACKWARD'],
  ['not SemVer', schema(withNote), '1.0.0', '1.1', 'is not MAJOR.MINOR.PATCH'],
  ['not Avro', '{"type": "record", "name": "x"}', '1.0.0', '1.1.0', 'not a valid Avro schema'],
];

for (const [name, nextText, prevVersion, nextVersion, expected] of CASES) {
  test(name, () => {
    const got = checkChange({ file: 'x.avsc', prevText: OLD, nextText, prevVersion, nextVersion });
    if (expected === null) assert.deepEqual(got, []);
    else assert.ok(got.length === 1 && got[0].includes(expected), JSON.stringify(got));
  });
}

test('new schema needs only a valid version', () => {
  assert.deepEqual(checkChange({ file: 'x.avsc', nextText: OLD, nextVersion: '0.1.0' }), []);
});

// A scratch repository with one commit per [schema text, version]; a null text leaves the
// schema as it is, a null version leaves versions.json out.
function repoWith(commits) {
  const dir = mkdtempSync(join(tmpdir(), 'schema-gate-'));
  const git = (...a) => execFileSync('git', ['-C', dir, ...a], { stdio: 'ignore' });
  git('init', '-q');
  mkdirSync(join(dir, 'schemas'));
  for (const [text, version] of commits) {
    if (text !== null) writeFileSync(join(dir, 'schemas', 'a.avsc'), text);
    if (version !== null)
      writeFileSync(join(dir, 'schemas', 'versions.json'), JSON.stringify({ 'a.avsc': version }));
    git('add', '-A');
    git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', version);
  }
  return dir;
}

const gate = (dir) => spawnSync('node', [CHECK, '--repo', dir], { encoding: 'utf8' });

test('gate on git: the last commit breaks the schema without MAJOR', () => {
  const dir = repoWith([[OLD, '1.0.0'], [schema(base.slice(0, 1)), '1.1.0']]);
  const r = gate(dir);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /a\.avsc: incompatible change \(not FORWARD/);
  rmSync(dir, { recursive: true });
});

test('gate on git: a compatible last commit with MINOR passes, later work-tree edits count', () => {
  const dir = repoWith([[OLD, '1.0.0'], [schema(withNote), '1.1.0']]);
  assert.equal(gate(dir).status, 0);
  writeFileSync(join(dir, 'schemas', 'a.avsc'), schema(base));  // removes `note` (has a default)
  writeFileSync(join(dir, 'schemas', 'versions.json'), '{"a.avsc": "2.0.0"}');
  const r = gate(dir);
  assert.equal(r.status, 1, r.stdout);
  assert.match(r.stderr, /compatible change bumps MAJOR \(1\.1\.0 -> 2\.0\.0\)/);
  rmSync(dir, { recursive: true });
});

test('gate on git: versions.json added after the schema, then a breaking work-tree edit', () => {
  const dir = repoWith([[OLD, null], [null, '1.0.0']]);
  assert.equal(gate(dir).status, 0);
  writeFileSync(join(dir, 'schemas', 'a.avsc'), schema(base.slice(0, 1)));
  writeFileSync(join(dir, 'schemas', 'versions.json'), '{"a.avsc": "1.1.0"}');
  const r = gate(dir);
  assert.equal(r.status, 1, r.stdout);
  assert.match(r.stderr, /incompatible change \(not FORWARD.*1\.0\.0 -> 1\.1\.0 keeps MAJOR 1/);
  rmSync(dir, { recursive: true });
});
