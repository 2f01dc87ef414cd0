// Two things node-postgres does, each checked alone on a pool of one server so that both
// clients share it. Both pass against PostgreSQL directly: each client's named statement
// is analysed when that client sends its Parse, in its own session.
//
//   search-path   Two clients prepare the same text, `SELECT who FROM whoami`, under
//                 different search_paths that resolve it to tables with different column
//                 types. Each must read its own table.
//   alter-table   A client prepares `SELECT * FROM t`; then a column is added to t; then
//                 another client prepares the same text for the first time. It must get
//                 the new column (the first client's statement is stale, as on PostgreSQL).
//
// Usage: pg_cases.js CASE (WEIR_TEST_DSN in the environment).

'use strict'

const pg = require('pg')

const { dsn, expect, versionOf, Tally } = require('./weirtest')

/** Two connected clients; `body(a, b)`; both closed. */
async function withTwo(body) {
  const a = new pg.Client({ connectionString: dsn() })
  const b = new pg.Client({ connectionString: dsn() })
  await a.connect()
  await b.connect()
  try {
    await body(a, b)
  } finally {
    await a.end()
    await b.end()
  }
}

async function searchPath(tally) {
  await withTwo(async (a, b) => {
    await a.query(
      "CREATE SCHEMA s1; CREATE TABLE s1.whoami (who text); INSERT INTO s1.whoami VALUES ('one');" +
        ' CREATE TABLE public.whoami (who int); INSERT INTO public.whoami VALUES (-1)'
    )
    await a.query('SET search_path TO s1, public')
    const who = { name: 'who', text: 'SELECT who FROM whoami' }
    expect('a: s1.whoami', (await a.query(who)).rows, [{ who: 'one' }])
    expect('b: public.whoami, same statement text', (await b.query(who)).rows, [{ who: -1 }])
    expect('a again', (await a.query(who)).rows, [{ who: 'one' }])
    expect('b again', (await b.query(who)).rows, [{ who: -1 }])
    tally.ok('same named statement text under two search_paths, one server')
  })
}

async function alterTable(tally) {
  await withTwo(async (a, b) => {
    await a.query('CREATE TABLE t (x int); INSERT INTO t VALUES (1)')
    const star = { name: 'star', text: 'SELECT * FROM t' }
    expect('a: before ALTER', (await a.query(star)).rows, [{ x: 1 }])
    await a.query('ALTER TABLE t ADD COLUMN y int')
    expect('b: first Parse after ALTER', (await b.query(star)).rows, [{ x: 1, y: null }])
    tally.ok('statement text prepared again after ALTER TABLE, by a new client')
  })
}

const CASES = { 'search-path': searchPath, 'alter-table': alterTable }

async function main() {
  const name = process.argv[2]
  const tally = new Tally()
  await tally.guard(name, () => CASES[name](tally))
  tally.report(`pg ${versionOf('pg')}: ${name}`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
