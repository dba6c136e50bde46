#!/usr/bin/env node
// Validates BPMN models the way Camunda Modeler does: bpmnlint with the repository's
// .bpmnlintrc (bpmnlint's recommended rules and camunda-compat's rules for the Zeebe version),
// the model read with the zeebe moddle extension so zeebe:* elements are understood. DMN models
// (no bpmnlint rules exist for them) are read with dmn-moddle: anything it does not recognise
// as DMN is an error. Exit 1 when any model has an error.
//
//   node tests/delivery/lint-models.mjs .bpmnlintrc model.bpmn...
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BpmnModdle } from 'bpmn-moddle';
import { DmnModdle } from 'dmn-moddle';

const require = createRequire(import.meta.url);
const Linter = require('bpmnlint/lib/linter');
const NodeResolver = require('bpmnlint/lib/resolver/node-resolver');
const zeebe = require('zeebe-bpmn-moddle/resources/zeebe.json');

const [rcPath, ...models] = process.argv.slice(2);
const linter = new Linter({
  config: JSON.parse(readFileSync(rcPath, 'utf8')),
  resolver: new NodeResolver({ require }),
});
const bpmn = new BpmnModdle({ zeebe });
const dmn = new DmnModdle();
let errors = 0;

async function read(path) {
  const dmnFile = path.endsWith('.dmn');
  try {
    const { rootElement, warnings } = await (dmnFile ? dmn : bpmn).fromXML(readFileSync(path, 'utf8'));
    for (const w of warnings) {
      console.log(`${path}: error: import: ${w.message}`);
      errors++;
    }
    return dmnFile ? null : rootElement;
  } catch (e) {
    console.log(`${path}: error: not readable as ${dmnFile ? 'DMN' : 'BPMN'}: ${e.message}`);
    errors++;
    return null;
  }
}

for (const path of models) {
  const rootElement = await read(path);
  if (!rootElement) continue;
  const reports = await linter.lint(rootElement);
  for (const [rule, items] of Object.entries(reports))
    for (const r of items) {
      console.log(`${path}: ${r.category}: ${r.id ?? '-'}: ${r.message} (${rule})`);
      if (r.category === 'error') errors++;
    }
}
console.log(`models: ${models.length} linted, ${errors} error(s)`);
process.exit(errors ? 1 : 0);
