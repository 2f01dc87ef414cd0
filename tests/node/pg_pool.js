// node-postgres (`pg`) through weir: a pg.Pool whose clients all stay connected at once,
// many more of them than weir has server connections. Every worker holds one client and
// runs, each round: parametrised queries, named prepared statements (pg sends Parse with
// the name once per connection and later only Bind by name, in whatever transaction and
// so on whatever server weir picks), a committed and a rolled-back transaction, an error
// inside a transaction and the recovery after it, and a pg_notify.
//
// Some workers have their own search_path, TimeZone and application_name, set once; the
// others must never see them, and all keep the settings of their startup packet. One
// worker keeps session state that pins it to a server (a temporary table, an SQL-level
// PREPARE, a WITH HOLD cursor) across queries and then drops it; another holds a session
// advisory lock that nobody else may get; and a dedicated pg.Client LISTENs and must get
// every notification while it sits idle.
//
// Usage: pg_pool.js CLIENTS ROUNDS (WEIR_TEST_DSN in the environment).

'use strict'

const pg = require('pg')

const { dsn, expect, expectError, versionOf, within, Tally } = require('./weirtest')

const CHANNEL = 'events'
/** A fixed instant; how it prints shows which TimeZone the session has. */
const INSTANT = '2024-01-01 00:00:00+00'
/** Time zones of the workers that set one, and how INSTANT prints in each. */
const ZONES = [
  ['Asia/Tokyo', '2024-01-01 09:00:00+09'],
  ['America/Lima', '2023-12-31 19:00:00-05'],
  ['Pacific/Auckland', '2024-01-01 13:00:00+13'],
]
/** A named statement every client prepares; pg Parses it once per connection. */
const TRIPLE = { name: 'triple', text: 'SELECT $1::int * 3 AS v' }
/** Workers with `i % SETTER_EVERY == 1` set their own search_path, TimeZone, application_name. */
const SETTER_EVERY = 4
/** The worker with a temporary table, an SQL PREPARE and a WITH HOLD cursor. */
const SESSION_WORKER = 0
/** The worker that holds a session advisory lock on LOCK_KEY from start to end. */
const LOCK_WORKER = 2
const LOCK_KEY = 4242
/**
 * Every client's configuration. pg sends application_name and statement_timeout in the
 * startup packet: weir must give them to every server the client uses, and RESET returns
 * to them.
 */
const CONFIG = { application_name: 'weir-node-pg', statement_timeout: 20000 }
/** How long a notification may take to arrive. */
const NOTIFY_WAIT_MS = 10000

function isSetter(i) {
  return i % SETTER_EVERY === 1
}

/** Tables and schemas, and the settings a session has when nobody set anything. */
async function setup(clients) {
  const c = new pg.Client({ ...CONFIG, connectionString: dsn() })
  await c.connect()
  try {
    await c.query(
      'CREATE TABLE entries (client int, round int, note text, PRIMARY KEY (client, round));' +
        ' CREATE TABLE whoami (who int); INSERT INTO whoami VALUES (-1)'
    )
    for (let i = 0; i < clients; i++) {
      if (isSetter(i)) {
        await c.query(
          `CREATE SCHEMA s${i}; CREATE TABLE s${i}.whoami (who int);` +
            ` INSERT INTO s${i}.whoami VALUES (${i})`
        )
      }
    }
    return await settingsOf(c)
  } finally {
    await c.end()
  }
}

/**
 * What a session sees of its settings: search_path, whoami, how INSTANT prints, and the
 * two settings from the startup packet.
 */
async function settingsOf(c) {
  const path = (await c.query('SHOW search_path')).rows[0].search_path
  const who = (await c.query('SELECT who FROM whoami')).rows[0].who
  const { instant, app, timeout } = (
    await c.query(
      "SELECT $1::timestamptz::text AS instant, current_setting('application_name') AS app," +
        " current_setting('statement_timeout') AS timeout",
      [INSTANT]
    )
  ).rows[0]
  return { path, who, instant, app, timeout }
}

/** The dedicated LISTEN client: connected, listening, and collecting payloads. */
async function listener() {
  const c = new pg.Client({ ...CONFIG, connectionString: dsn() })
  const payloads = []
  let wake = null
  c.on('notification', (msg) => {
    if (msg.channel === CHANNEL) payloads.push(msg.payload)
    if (wake) wake()
  })
  await c.connect()
  await c.query(`LISTEN ${CHANNEL}`)
  /** Resolves once `n` payloads have arrived; rejects after NOTIFY_WAIT_MS. */
  const arrived = (n, what) =>
    within(
      what,
      NOTIFY_WAIT_MS,
      new Promise((resolve) => {
        const check = () => {
          if (payloads.length >= n) {
            wake = null
            resolve()
          }
        }
        wake = check
        check()
      })
    )
  return { client: c, payloads, arrived }
}

async function worker(client, i, rounds, defaults, tally) {
  const zone = ZONES[i % ZONES.length]
  const q = (text, values) => client.query(text, values)
  const one = async (text, values) => (await q(text, values)).rows[0]

  if (isSetter(i)) {
    await q(`SET search_path TO s${i}, public`)
    await q(`SET TIME ZONE '${zone[0]}'`)
    await q(`SET application_name = 'w${i}'`)
  }
  if (i === SESSION_WORKER) {
    await q('CREATE TEMP TABLE scratch (n int)')
    await q('PREPARE seven (int) AS SELECT $1 * 7 AS v')
    await q(`DECLARE held CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, ${3 * rounds}) g`)
  }

  for (let r = 0; r < rounds; r++) {
    expect('parametrised', await one('SELECT $1::int + $2::int AS s, $3::text AS t', [i, r, `c${i}`]), {
      s: i + r,
      t: `c${i}`,
    })
    tally.ok('parametrised query (unnamed statement)')

    const triple = { ...TRIPLE, values: [i * 10 + r] }
    expect('named triple', await one(triple), { v: (i * 10 + r) * 3 })
    tally.ok('named prepared statement, Bind by name in a later transaction')
    // The same name with a different text on other clients.
    const shape = { name: 'shape', text: `SELECT $1::int * ${(i % 3) + 2} AS v`, values: [r + 1] }
    expect('named shape', await one(shape), { v: (r + 1) * ((i % 3) + 2) })
    tally.ok('one statement name, three texts across clients')

    // Commit.
    await q('BEGIN')
    const put = {
      name: 'put',
      text: 'INSERT INTO entries (client, round, note) VALUES ($1, $2, $3) RETURNING note',
      values: [i, r, `${i}/${r}`],
    }
    expect('INSERT RETURNING', await one(put), { note: `${i}/${r}` })
    expect('count in transaction', await one('SELECT count(*)::int AS n FROM entries WHERE client = $1', [i]), {
      n: r + 1,
    })
    await q('COMMIT')
    tally.ok('BEGIN, named INSERT, SELECT, COMMIT')

    // Rollback.
    await q('BEGIN')
    const deleted = await q('DELETE FROM entries WHERE client = $1', [i])
    expect('DELETE rowCount', deleted.rowCount, r + 1)
    await q('ROLLBACK')
    const notes = { name: 'notes', text: 'SELECT note FROM entries WHERE client = $1 ORDER BY round', values: [i] }
    const want = Array.from({ length: r + 1 }, (_, k) => ({ note: `${i}/${k}` }))
    expect('notes after ROLLBACK', (await q(notes)).rows, want)
    tally.ok('BEGIN, DELETE, ROLLBACK, rows still there')

    // An error inside a transaction; the transaction is then aborted until ROLLBACK.
    await q('BEGIN')
    await q("UPDATE entries SET note = 'lost' WHERE client = $1", [i])
    await expectError('division by zero in transaction', q('SELECT 1 / $1::int', [0]), '22012')
    await expectError('query in aborted transaction', q('SELECT 1'), '25P02')
    await q('ROLLBACK')
    expect('notes after error and ROLLBACK', (await q(notes)).rows, want)
    tally.ok('error mid-transaction (22012, then 25P02), ROLLBACK, UPDATE undone')

    // A named statement whose Execute fails, then the same name used again.
    const inverse = (n) => ({ name: 'inverse', text: 'SELECT 60 / $1::int AS v', values: [n] })
    await expectError('named statement failing', q(inverse(0)), '22012')
    expect('named statement after its failure', await one(inverse(r + 1)), { v: Math.trunc(60 / (r + 1)) })
    tally.ok('named statement fails on Execute, then works')

    // Settings: this client's own, or the defaults.
    if (isSetter(i)) {
      const mine = { ...defaults, path: `s${i}, public`, who: i, instant: zone[1], app: `w${i}` }
      expect(`worker ${i}: its own settings`, await settingsOf(client), mine)
      tally.ok('SET search_path / TIME ZONE / application_name still in effect')
      if (r === 0) {
        await q('BEGIN')
        await q("SET TIME ZONE 'UTC'")
        expect('TimeZone inside the transaction', (await one('SHOW TimeZone')).TimeZone, 'UTC')
        await q('ROLLBACK')
        expect(`worker ${i}: settings after a rolled-back SET`, await settingsOf(client), mine)
        tally.ok('SET TIME ZONE undone by ROLLBACK')
      }
    } else {
      expect(`worker ${i}: default settings`, await settingsOf(client), defaults)
      tally.ok("another client's SET not seen")
    }

    // Session state, only where it was made.
    if (i === SESSION_WORKER) {
      await q('INSERT INTO scratch VALUES ($1)', [r + 1])
      const count = { name: 'scratch-count', text: 'SELECT count(*)::int AS n, sum(n)::int AS s FROM scratch' }
      expect('temp table', await one(count), { n: r + 1, s: ((r + 1) * (r + 2)) / 2 })
      tally.ok('temporary table kept across queries')
      expect('EXECUTE seven', await one(`EXECUTE seven (${r})`), { v: 7 * r })
      tally.ok('SQL PREPARE kept, EXECUTE works')
      const fetched = (await q('FETCH 3 FROM held')).rows.map((row) => row.g)
      expect('FETCH from the WITH HOLD cursor', fetched, [3 * r + 1, 3 * r + 2, 3 * r + 3])
      tally.ok('WITH HOLD cursor kept, FETCH goes on where it stopped')
    } else {
      const state = await one(
        "SELECT to_regclass('scratch')::text AS t," +
          ' (SELECT count(*)::int FROM pg_prepared_statements WHERE from_sql) AS prepared,' +
          ' (SELECT count(*)::int FROM pg_cursors WHERE is_holdable) AS cursors'
      )
      expect("no other client's temp table, PREPARE or cursor here", state, { t: null, prepared: 0, cursors: 0 })
    }
    if (i !== LOCK_WORKER) {
      const { got, pid } = await one('SELECT pg_try_advisory_lock($1) AS got, pg_backend_pid() AS pid', [LOCK_KEY])
      if (got) await q('SELECT pg_advisory_unlock($1)', [LOCK_KEY])
      expect(`another client's advisory lock (backend ${pid}, round ${r})`, got, false)
      tally.ok("another client's session advisory lock not granted")
    }

    await q('SELECT pg_notify($1, $2)', [CHANNEL, `${i}:${r}`])
  }

  if (i === SESSION_WORKER) {
    await q('DROP TABLE scratch')
    await q('DEALLOCATE seven')
    await q('CLOSE held')
    expect('temp table dropped', (await one("SELECT to_regclass('scratch')::text AS t")).t, null)
    // No longer pinned: the named statements follow the client to whatever server comes.
    for (let k = 0; k < 3; k++) {
      expect('named statement after unpinning', await one({ ...TRIPLE, values: [k] }), { v: 3 * k })
    }
    tally.ok('session state dropped, named statements go on')
  }
  if (isSetter(i)) {
    await q('RESET ALL')
    expect(`worker ${i}: settings after RESET ALL`, await settingsOf(client), defaults)
    tally.ok('RESET ALL back to the startup packet and server defaults')
  }
}

async function main() {
  const [clients, rounds] = process.argv.slice(2).map(Number)
  const tally = new Tally()
  const defaults = await setup(clients)
  console.log(`  defaults: ${JSON.stringify(defaults)}`)

  const listening = await listener()
  const pool = new pg.Pool({ ...CONFIG, connectionString: dsn(), max: clients, connectionTimeoutMillis: 20000 })
  pool.on('error', (error) => tally.failed('pool (idle client)', error))
  try {
    // The notification arrives while the listener is idle: it sends nothing until then.
    await pool.query(`NOTIFY ${CHANNEL}, 'hello'`)
    await listening.arrived(1, 'NOTIFY to the idle listener')
    expect('first payload', listening.payloads.shift(), 'hello')
    tally.ok('notification to an idle LISTEN client')

    // All clients connected at once, each held by one worker for the whole run.
    const held = await Promise.all(Array.from({ length: clients }, () => pool.connect()))
    const broken = new Set()
    await held[LOCK_WORKER].query('SELECT pg_advisory_lock($1)', [LOCK_KEY])
    await Promise.all(
      held.map((client, i) =>
        tally.guard(`worker ${i}`, () =>
          worker(client, i, rounds, defaults, tally).catch((error) => {
            broken.add(i)
            throw error
          })
        )
      )
    )
    // The lock is given up only when no other worker tries it any more.
    await tally.guard('advisory lock holder', async () => {
      const unlocked = await held[LOCK_WORKER].query('SELECT pg_advisory_unlock($1) AS ok', [LOCK_KEY])
      expect('advisory unlock by its holder', unlocked.rows, [{ ok: true }])
      tally.ok('session advisory lock held to the end')
    })
    // A client that stopped on an error is closed rather than reused by pool.query.
    held.forEach((client, i) => client.release(broken.has(i)))

    // Every worker's notifications, each worker's in the order it sent them.
    await tally.guard('listener', async () => {
      await listening.arrived(clients * rounds, `${clients * rounds} notifications`)
      const bySender = new Map()
      for (const p of listening.payloads) {
        const [i, r] = p.split(':').map(Number)
        if (!bySender.has(i)) bySender.set(i, [])
        bySender.get(i).push(r)
      }
      const rs = Array.from({ length: rounds }, (_, r) => r)
      for (let i = 0; i < clients; i++) expect(`notifications from worker ${i}`, bySender.get(i), rs)
      expect('notifications in all', listening.payloads.length, clients * rounds)
      tally.ok('pg_notify payloads received in order', listening.payloads.length)
      await listening.client.query(`UNLISTEN ${CHANNEL}`)
      expect('listener after UNLISTEN', (await listening.client.query('SELECT 7 AS v')).rows, [{ v: 7 }])
    })

    // pool.query: any idle client of the pool, many at once.
    await tally.guard('pool.query', async () => {
      const answers = await Promise.all(
        Array.from({ length: clients * 5 }, (_, k) =>
          k % 2
            ? pool.query('SELECT $1::int * 2 AS v', [k])
            : pool.query({ name: 'double', text: 'SELECT $1::int * 2 AS v', values: [k] })
        )
      )
      answers.forEach((res, k) => expect(`pool.query ${k}`, res.rows, [{ v: 2 * k }]))
      tally.ok('pool.query, unnamed and named, concurrently', answers.length)
    })
  } catch (error) {
    tally.failed('main', error)
  } finally {
    await pool.end()
    await listening.client.end()
  }
  tally.report(`pg ${versionOf('pg')}: ${clients} clients x ${rounds} rounds`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
