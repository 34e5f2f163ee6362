// Evaluates filters with the reference complex-matcher (the npm package) for the
// differential test: one JSON document per input line -> one per output line.
'use strict'
const { parse } = require('complex-matcher')
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean)
for (const line of lines) {
  const { filter, values } = JSON.parse(line)
  let out
  try {
    const node = parse(filter)
    out = { ok: true, canonical: node.toString(), matches: values.map(v => node.match(v)) }
  } catch (error) {
    out = { ok: false, type: error.constructor.name, message: error.message }
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}
