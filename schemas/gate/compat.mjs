// The rules of the schema gate, without git. A change is compatible when the new schema is
// BACKWARD compatible with the old one (a reader with the new schema reads data written with
// the old one: what the Schema Registry enforces) and also FORWARD compatible (consumers still
// on the old schema read the new data: so removing a field without a default is breaking, as
// the platform's SemVer rules say), both by avsc's schema resolution (defaults, names, aliases,
// promotions). Compatible: MINOR or PATCH bump; incompatible: MAJOR bump.
import avro from 'avsc';

const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/;

export function parseVersion(v) {
  const m = typeof v === 'string' ? SEMVER.exec(v) : null;
  return m ? m.slice(1, 4).map(Number) : null;
}

function compare(a, b) {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

export function parseSchema(text) {
  return avro.Type.forSchema(JSON.parse(text), { wrapUnions: 'auto' });
}

// null when a reader with schema `reader` reads data written with `writer`, else the reason.
function resolveProblem(readerText, writerText) {
  try {
    parseSchema(readerText).createResolver(parseSchema(writerText));
    return null;
  } catch (e) {
    return e.message;
  }
}

// null when compatible both ways, else which way fails and why.
export function compatibilityProblem(prevText, nextText) {
  const backward = resolveProblem(nextText, prevText);
  if (backward) return `not BACKWARD: the new schema cannot read old data: ${backward}`;
  const forward = resolveProblem(prevText, nextText);
  return forward ? `not FORWARD: the old schema cannot read new data: ${forward}` : null;
}

// Problems (strings) of one schema change; an empty list passes.
export function checkChange({ file, prevText, nextText, prevVersion, nextVersion }) {
  const next = parseVersion(nextVersion);
  if (!next) return [`${file}: version ${JSON.stringify(nextVersion)} is not MAJOR.MINOR.PATCH`];
  try {
    parseSchema(nextText);
  } catch (e) {
    return [`${file}: not a valid Avro schema: ${e.message}`];
  }
  if (prevText === undefined || prevText === nextText) return [];
  const prev = parseVersion(prevVersion);
  if (!prev) return [`${file}: previous version ${JSON.stringify(prevVersion)} is not SemVer`];
  if (compare(next, prev) <= 0)
    return [`${file}: schema changed but version ${nextVersion} is not above ${prevVersion}`];
  const why = compatibilityProblem(prevText, nextText);
  if (why && next[0] === prev[0])
    return [`${file}: incompatible change (${why}) needs a MAJOR bump, ` +
      `${prevVersion} -> ${nextVersion} keeps MAJOR ${prev[0]}`];
  if (!why && next[0] !== prev[0])
    return [`${file}: compatible change bumps MAJOR (${prevVersion} -> ` +
      `${nextVersion}): use a MINOR or PATCH bump`];
  return [];
}
