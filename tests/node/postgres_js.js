// postgres.js (the `postgres` package) through weir. It prepares every query as a named
// statement on first use per connection (Parse + Describe + Flush, then Bind + Execute +
// Sync once it knows the parameter types) and pipelines queries it has prepared. Its pool
// of connections is much larger than weir's pool of servers.
//
// Checked: thousands of concurrent queries of a few dozen shapes; errors in the middle of
// a pipeline; `sql.begin` transactions committed, thrown out, failed by the server, and
// with savepoints and SET LOCAL; `sql.unsafe` multi-statement strings (one implicit
// transaction); `sql.reserve()` with its own settings and BEGIN; a query cancelled with
// `query.cancel()`; and `sql.listen` receiving `sql.notify`.
//
// Usage: postgres_js.js QUERIES TRANSACTIONS (WEIR_TEST_DSN in the environment).

'use strict'

const postgres = require('postgres')

const { dsn, expect, expectError, versionOf, within, Tally, WrongAnswer } = require('./weirtest')

const ACCOUNTS = 50
const START_BALANCE = 100
const CHANNEL = 'ledger'
const NOTIFY_WAIT_MS = 10000

/** Thrown inside `sql.begin` to make postgres.js roll the transaction back. */
class Rollback extends Error {}

/** The two accounts and the amount of transaction `k`; `from < to`, so locks never cross. */
function transfer(k) {
  const a = (k % ACCOUNTS) + 1
  const b = ((k * 7 + 3) % ACCOUNTS) + 1
  const [from, to] = a === b ? [a, (a % ACCOUNTS) + 1] : [a, b]
  return { from: Math.min(from, to), to: Math.max(from, to), amount: (k % 9) + 1 }
}

/**
 * What transaction `k` does: 'commit'; 'throw' (its callback throws, so it is rolled
 * back); 'duplicate' (a failing INSERT: 23505); or 'syntax' (a statement whose Parse fails,
 * after postgres.js sent it with Describe and Flush but no Sync: 42601).
 */
function fate(k) {
  return ['commit', 'commit', 'throw', 'duplicate', 'commit', 'commit', 'throw', 'syntax'][k % 8]
}

/**
 * `sql.unsafe` with a multi-statement string: one simple Query. postgres.js starts a new
 * result at each statement that returns rows, so the three CREATE TABLEs share the first.
 */
async function multiStatement(sql, tally) {
  const results = await sql.unsafe(
    'CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);' +
      ' CREATE TABLE transfers (k int PRIMARY KEY, from_id int, to_id int, amount int);' +
      ' CREATE TABLE audit (n int);' +
      ` INSERT INTO accounts SELECT g, ${START_BALANCE} FROM generate_series(1, ${ACCOUNTS}) g RETURNING id;` +
      ' SELECT count(*)::int AS n FROM accounts;' +
      ' SELECT sum(balance)::int AS s FROM accounts'
  )
  expect('results of the multi-statement string', results.length, 4)
  expect('first result', [results[0].command, results[0].count], ['CREATE TABLE', null])
  expect('INSERT ... RETURNING', [results[1].command, results[1].count], ['INSERT', ACCOUNTS])
  expect('ids returned', results[1].map((r) => r.id), Array.from({ length: ACCOUNTS }, (_, i) => i + 1))
  expect('count', [...results[2]], [{ n: ACCOUNTS }])
  expect('sum', [...results[3]], [{ s: ACCOUNTS * START_BALANCE }])
  tally.ok('sql.unsafe multi-statement: DDL, INSERT RETURNING, two SELECTs')

  // The statements of one Query string are one transaction: an error undoes the first.
  await expectError(
    'multi-statement with an error in the middle',
    sql.unsafe('INSERT INTO audit VALUES (1); SELECT 1 / 0; INSERT INTO audit VALUES (2)'),
    '22012'
  )
  expect('audit after the failed string', [...(await sql`SELECT count(*)::int AS n FROM audit`)], [{ n: 0 }])
  tally.ok('sql.unsafe multi-statement failing midway: all of it undone')
}

/** `n` queries at once, of a few dozen prepared shapes; postgres.js pipelines them. */
async function manyQueries(sql, n, tally) {
  const jobs = Array.from({ length: n }, async (_, k) => {
    switch (k % 4) {
      case 0: {
        const rows = await sql`SELECT ${k}::int + 1 AS v`
        return expect(`query ${k}`, [...rows], [{ v: k + 1 }])
      }
      case 1: {
        const rows = await sql.unsafe(`SELECT $1::int * ${k % 25} AS v, $2::text AS t`, [k, `q${k}`])
        return expect(`query ${k}`, [...rows], [{ v: k * (k % 25), t: `q${k}` }])
      }
      case 2: {
        // int8 comes back as a string.
        const rows = await sql`SELECT ${k}::int8 AS big, ${k % 2 === 0} AS even`
        return expect(`query ${k}`, [...rows], [{ big: String(k), even: true }])
      }
      default: {
        const id = (k % ACCOUNTS) + 1
        const rows = await sql`SELECT id FROM accounts WHERE id = ${id}`
        return expect(`query ${k}`, [...rows], [{ id }])
      }
    }
  })
  await Promise.all(jobs)
  tally.ok('concurrent prepared queries, pipelined', n)
}

/** Errors inside a burst of pipelined queries fail only their own query. */
async function errorsInPipeline(sql, n, tally) {
  const jobs = Array.from({ length: n }, async (_, k) => {
    switch (k % 10) {
      case 3:
        return expectError(`query ${k}: division by zero`, sql`SELECT 10 / ${0}::int AS v`, '22012')
      case 6:
        return expectError(`query ${k}: unknown column`, sql`SELECT nope FROM accounts WHERE id = ${k}`, '42703')
      case 8:
        return expectError(`query ${k}: bad input for Bind`, sql`SELECT ${'abc'}::int AS v`, '22P02')
      case 9:
        return expectError(`query ${k}: duplicate key`, sql`INSERT INTO accounts VALUES (${1}, 0)`, '23505')
      default: {
        const rows = await sql`SELECT ${k}::int * 2 AS v`
        return expect(`query ${k} among failing ones`, [...rows], [{ v: 2 * k }])
      }
    }
  })
  await Promise.all(jobs)
  tally.ok('pipelined queries, some failing (22012, 42703, 22P02, 23505), the others answered', n)
  await expectError('syntax error (simple)', sql.unsafe('SELEC 1'), '42601')
  await expectError('syntax error (prepared)', sql`SELEC ${1}`, '42601')
  expect('after the errors', [...(await sql`SELECT ${'fine'} AS s`)], [{ s: 'fine' }])
  tally.ok('syntax errors, then queries work')
}

/**
 * `sql.begin` transfers, concurrently: half commit, a quarter are thrown out, a quarter
 * fail on the server. Each sets a `SET LOCAL`, which must not outlive it.
 */
async function transactions(sql, n, tally) {
  const jobs = Array.from({ length: n }, async (_, k) => {
    const { from, to, amount } = transfer(k)
    const body = sql.begin(async (tx) => {
      await tx`SET LOCAL lock_timeout = '9s'`
      await tx`UPDATE accounts SET balance = balance - ${amount} WHERE id = ${from}`
      await tx`UPDATE accounts SET balance = balance + ${amount} WHERE id = ${to}`
      await tx`INSERT INTO transfers VALUES (${k}, ${from}, ${to}, ${amount})`
      // A savepoint whose work is undone; the transaction goes on.
      await tx
        .savepoint(async (sp) => {
          await sp`INSERT INTO audit VALUES (${k})`
          throw new Rollback()
        })
        .catch((e) => {
          if (!(e instanceof Rollback)) throw e
        })
      const [seen] = await tx`SELECT amount, (SELECT count(*)::int FROM audit WHERE n = ${k}) AS audit
                              FROM transfers WHERE k = ${k}`
      expect(`transaction ${k}: own row, savepoint undone`, seen, { amount, audit: 0 })
      if (fate(k) === 'throw') throw new Rollback()
      if (fate(k) === 'duplicate') await tx`INSERT INTO transfers VALUES (${k}, 0, 0, 0)`
      if (fate(k) === 'syntax') await tx`SELEC ${k}`
      return k
    })
    switch (fate(k)) {
      case 'commit':
        expect(`transaction ${k} result`, await body, k)
        return tally.ok('sql.begin committed (with a savepoint rolled back)')
      case 'throw':
        try {
          await body
        } catch (e) {
          if (e instanceof Rollback) return tally.ok('sql.begin rolled back by a throw')
          throw e
        }
        throw new WrongAnswer(`transaction ${k}: committed, but its callback threw`)
      case 'duplicate':
        await expectError(`transaction ${k}: duplicate key`, body, '23505')
        return tally.ok('sql.begin failed by the server (23505)')
      default:
        await expectError(`transaction ${k}: syntax error`, body, '42601')
        return tally.ok('sql.begin failed on Parse after Describe + Flush (42601)')
    }
  })
  await Promise.all(jobs)

  // What the database holds: committed transfers only, and no money made or lost.
  const committed = Array.from({ length: n }, (_, k) => k).filter((k) => fate(k) === 'commit')
  const balances = new Map(Array.from({ length: ACCOUNTS }, (_, i) => [i + 1, START_BALANCE]))
  for (const k of committed) {
    const { from, to, amount } = transfer(k)
    balances.set(from, balances.get(from) - amount)
    balances.set(to, balances.get(to) + amount)
  }
  const rows = await sql`SELECT id, balance FROM accounts ORDER BY id`
  expect('balances', [...rows], [...balances].map(([id, balance]) => ({ id, balance })))
  const ks = await sql`SELECT k FROM transfers ORDER BY k`
  expect('transfers', ks.map((r) => r.k), committed)
  tally.ok('balances and transfers are exactly the committed transactions')
  const timeouts = await Promise.all(Array.from({ length: 40 }, () => sql`SELECT current_setting('lock_timeout') AS t`))
  expect('lock_timeout after the SET LOCALs', new Set(timeouts.map((rows) => rows[0].t)), new Set(['0']))
  tally.ok('SET LOCAL gone after each transaction')
}

/**
 * `sql.reserve()`: one connection for this code alone. Its session settings and its
 * BEGIN/COMMIT stay on it; the rest of the pool, busy at the same time, sees none of it.
 */
async function reserved(sql, n, tally) {
  const settings = (q) => q`SELECT current_setting('TimeZone') AS tz, current_setting('application_name') AS app`
  const [defaults] = await settings(sql)
  expect('application_name from the startup packet', defaults.app, 'postgres.js')
  const own = await sql.reserve()
  try {
    await own`SET TIME ZONE 'Asia/Tokyo'`
    await own`SET application_name = 'reserved'`
    const mine = { tz: 'Asia/Tokyo', app: 'reserved' }
    const others = Array.from({ length: n }, async () => expect('pool session', (await settings(sql))[0], defaults))
    const ownChecks = (async () => {
      for (let r = 0; r < 10; r++) {
        expect('reserved session', (await settings(own))[0], mine)
        await own`BEGIN`
        await own`INSERT INTO audit VALUES (${-1 - r})`
        expect('only this round\'s row inside BEGIN', [...(await own`SELECT count(*)::int AS n FROM audit WHERE n < 0`)], [{ n: 1 }])
        await own`ROLLBACK`
      }
      expect('rows after the ROLLBACKs', [...(await own`SELECT count(*)::int AS n FROM audit`)], [{ n: 0 }])
    })()
    await Promise.all([...others, ownChecks])
    tally.ok('pool queries do not see the reserved connection\'s SET', n)
    tally.ok('reserved connection: SET kept, BEGIN/ROLLBACK by hand', 10)
    await own`RESET ALL`
    expect('reserved session after RESET ALL', (await settings(own))[0], defaults)
  } finally {
    own.release()
  }
}

/** `query.cancel()` while the query runs: 57014, and the connection goes on. */
async function cancel(sql, tally) {
  const slow = sql`SELECT pg_sleep(${30})`
  const started = Date.now()
  setTimeout(() => slow.cancel(), 300)
  await within('cancelled pg_sleep', 10000, expectError('cancelled query', slow, '57014'))
  tally.ok(`query.cancel() (answered after ${Date.now() - started} ms)`)
  expect('after the cancel', [...(await sql`SELECT ${2}::int AS v`)], [{ v: 2 }])
}

async function main() {
  const [queries, txCount] = process.argv.slice(2).map(Number)
  const tally = new Tally()
  const sql = postgres(dsn(), { max: 20, idle_timeout: 0, connect_timeout: 20, onnotice: () => {} })
  const payloads = []
  try {
    // sql.listen opens its own connection (weir pins it to a server) and LISTENs there.
    const listening = await sql.listen(CHANNEL, (p) => payloads.push(p))
    const arrived = (n, what) =>
      within(
        what,
        NOTIFY_WAIT_MS,
        new Promise((resolve) => {
          const poll = setInterval(() => payloads.length >= n && (clearInterval(poll), resolve()), 20)
        })
      )

    await tally.guard('multi-statement', () => multiStatement(sql, tally))
    await sql.notify(CHANNEL, 'after setup')
    await tally.guard('many queries', () => manyQueries(sql, queries, tally))
    await tally.guard('errors', () => errorsInPipeline(sql, queries / 4, tally))
    await sql.notify(CHANNEL, 'after queries')
    await tally.guard('transactions', () => transactions(sql, txCount, tally))
    await sql.begin((tx) => tx`SELECT pg_notify(${CHANNEL}, ${'from a transaction'})`)
    await tally.guard('reserve', () => reserved(sql, 200, tally))
    await tally.guard('cancel', () => cancel(sql, tally))

    await tally.guard('listen', async () => {
      await arrived(3, 'three notifications')
      expect('notifications', payloads, ['after setup', 'after queries', 'from a transaction'])
      tally.ok('sql.listen got sql.notify payloads in order', payloads.length)
      await listening.unlisten()
    })
  } catch (error) {
    tally.failed('main', error)
  } finally {
    await sql.end({ timeout: 5 })
  }
  tally.report(`postgres.js ${versionOf('postgres')}: ${queries} queries, ${txCount} transactions`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
