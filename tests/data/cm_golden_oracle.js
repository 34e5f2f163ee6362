// Runs filters with the reference complex-matcher (the npm package) over collections of
// objects, for tests/test_golden_filters.py.  Input (stdin): one JSON document
// {collections: {name: [object, ...]}, cases: [{collection, filter}, ...]}.  Output: one
// JSON line per case: {ok: true, matches: [indexes of matching objects]} or
// {ok: false, type, message}.  The module to load is the first argument (default
// complex-matcher: 0.7.0 from npm; complex-matcher-1 is a 1.x installed under that name).
'use strict'
const { parse } = require(process.argv[2] || 'complex-matcher')
const { collections, cases } = JSON.parse(require('fs').readFileSync(0, 'utf8'))
for (const { collection, filter } of cases) {
  let out
  try {
    const node = parse(filter)
    const matches = []
    collections[collection].forEach((object, i) => {
      if (node.match(object)) matches.push(i)
    })
    out = { ok: true, matches }
  } catch (error) {
    out = { ok: false, type: error.constructor.name, message: error.message }
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}
