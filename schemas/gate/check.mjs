#!/usr/bin/env node
// Schema gate: compares every schemas/*.avsc with its previous version in git (the committed
// one when the work tree changed it, else the one before the last commit that changed it; or
// the version at --base <rev>) and applies compat.mjs's rules with the versions of
// schemas/versions.json at both points. Exit 1 with one line per problem.
//
//   node schemas/gate/check.mjs [--repo DIR] [--base REV]
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkChange } from './compat.mjs';

const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const repo = opt('--repo') ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const base = opt('--base');
const git = (...a) =>
  execFileSync('git', ['-C', repo, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
const show = (rev, path) => {
  try {
    return git('show', `${rev}:${path}`);
  } catch {
    return undefined;
  }
};

// The revision holding the previous version of path: HEAD when the work tree changed it, else
// the parent of the last commit that changed it (null: a new schema).
function previousRev(path, current) {
  if (base) return base;
  const committed = show('HEAD', path);
  if (committed === undefined) return null;
  if (committed !== current) return 'HEAD';
  const last = git('log', '-n1', '--format=%H', '--', path).trim();
  return last ? `${last}^` : null;
}

const versionsOf = (text) => (text === undefined ? {} : JSON.parse(text));
const dir = join(repo, 'schemas');
const versions = versionsOf(readFileSync(join(dir, 'versions.json'), 'utf8'));
const problems = [];
const files = readdirSync(dir).filter((f) => f.endsWith('.avsc')).sort();
for (const file of files) {
  const path = `schemas/${file}`;
  const nextText = readFileSync(join(dir, file), 'utf8');
  const rev = previousRev(path, nextText);
  const prevText = rev ? show(rev, path) : undefined;
  const prevVersions = rev ? versionsOf(show(rev, 'schemas/versions.json')) : {};
  problems.push(...checkChange({
    file, prevText, nextText, prevVersion: prevVersions[file], nextVersion: versions[file],
  }));
}
for (const file of Object.keys(versions))
  if (!existsSync(join(dir, file))) problems.push(`versions.json: ${file} has no schema file`);
for (const p of problems) console.error(p);
console.log(`schema gate: ${files.length} schema(s), ${problems.length} problem(s)`);
process.exit(problems.length ? 1 : 0);
