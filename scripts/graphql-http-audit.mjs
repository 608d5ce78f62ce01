// Runs the graphql-http audit suite against a running etal server.
// Usage: node scripts/graphql-http-audit.mjs http://127.0.0.1:8080/graphql
// (install first: npm install --prefix scripts). Prints every result, one per line, and a
// JSON summary last; exits 1 when a MUST fails.
import { auditServer } from 'graphql-http';

const url = process.argv[2] ?? 'http://127.0.0.1:8080/graphql';
const results = await auditServer({ url });
const counts = { MUST: [0, 0], SHOULD: [0, 0], MAY: [0, 0] };
for (const r of results) {
  const level = r.name.split(' ')[0];
  const ok = r.status === 'ok';
  counts[level][ok ? 0 : 1] += 1;
  console.log(`${ok ? 'ok  ' : r.status.padEnd(4)} ${r.id} ${r.name}${ok ? '' : ` -- ${r.reason}`}`);
}
const summary = Object.fromEntries(
  Object.entries(counts).map(([k, [ok, notOk]]) => [k, { ok, notOk }]),
);
console.log(JSON.stringify(summary));
process.exit(counts.MUST[1] === 0 ? 0 : 1);
