// Shared by the driver scripts of tests/node_drivers.rs: where weir is, and how a script
// counts what it checked and reports what went wrong.
//
// The Rust test passes the connection as WEIR_TEST_DSN (a postgresql:// URL through weir)
// and reads the script's exit status: 0 only if every check passed.

'use strict'

const assert = require('node:assert')
const fs = require('node:fs')
const path = require('node:path')

/** The postgresql:// URL of weir, as given by the Rust test. */
function dsn() {
  const value = process.env.WEIR_TEST_DSN
  if (!value) {
    console.error('WEIR_TEST_DSN is not set: run this script from tests/node_drivers.rs')
    process.exit(2)
  }
  return value
}

/** The version of installed package `pkg`, from its package.json (which it may not export). */
function versionOf(pkg) {
  const entry = require.resolve(pkg)
  const marker = `${path.sep}node_modules${path.sep}${pkg}${path.sep}`
  const root = entry.slice(0, entry.lastIndexOf(marker) + marker.length)
  return JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version
}

/** A driver call succeeded but returned something other than what was expected. */
class WrongAnswer extends Error {}

/** Throws WrongAnswer unless `got` deep-equals `want`. */
function expect(what, got, want) {
  try {
    assert.deepStrictEqual(got, want)
  } catch {
    throw new WrongAnswer(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
  }
}

/**
 * Awaits `promise`, which must reject with a PostgreSQL error of SQLSTATE `code`; returns
 * the error. A success, or another error, is a WrongAnswer.
 */
async function expectError(what, promise, code) {
  let error
  try {
    await promise
  } catch (e) {
    error = e
  }
  if (error === undefined) {
    throw new WrongAnswer(`${what}: succeeded, want an error with SQLSTATE ${code}`)
  }
  if (error.code !== code) {
    const text = `${error.name}: ${error.message}`
    throw new WrongAnswer(`${what}: got ${text} (SQLSTATE ${error.code}), want SQLSTATE ${code}`)
  }
  return error
}

/** Rejects with a WrongAnswer naming `what` if `promise` is not settled within `ms`. */
function within(what, ms, promise) {
  let timer
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new WrongAnswer(`${what}: nothing after ${ms} ms`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

/**
 * Checks passed and failures seen. Each client records its failure and stops; the script
 * carries on with the others so that the report shows how widespread a problem is.
 */
class Tally {
  constructor() {
    /** Passed checks, by kind. */
    this.checks = new Map()
    /** [who, kind, stack] of each client that stopped on an error. */
    this.failures = []
  }

  /** Counts `n` passed checks of kind `what`. */
  ok(what, n = 1) {
    this.checks.set(what, (this.checks.get(what) || 0) + n)
  }

  /** Records that client `who` stopped on `error`. */
  failed(who, error) {
    const sqlstate = error && error.code ? ` (SQLSTATE ${error.code})` : ''
    const name = (error && error.constructor && error.constructor.name) || 'Error'
    const first = String((error && error.message) || error).split('\n')[0]
    const stack = String((error && error.stack) || error).split('\n').slice(0, 6).join('\n')
    this.failures.push([who, `${name}${sqlstate}: ${first}`, stack])
  }

  /** Runs `body`; records its failure under `who` instead of throwing. */
  async guard(who, body) {
    try {
      await body()
    } catch (error) {
      this.failed(who, error)
    }
  }

  /** Prints what was checked; exits 1 after listing failures if there were any. */
  report(title) {
    console.log(`== ${title}`)
    for (const [what, n] of [...this.checks].sort(([a], [b]) => a.localeCompare(b))) {
      console.log(`  ok ${String(n).padStart(6)}  ${what}`)
    }
    if (this.failures.length === 0) {
      console.log('  all checks passed')
      return
    }
    console.error(`  FAILED: ${this.failures.length} client(s) stopped on an error`)
    const kinds = new Map()
    for (const [, kind] of this.failures) kinds.set(kind, (kinds.get(kind) || 0) + 1)
    const sorted = [...kinds].sort((a, b) => b[1] - a[1])
    for (const [kind, n] of sorted.slice(0, 10)) console.error(`  ${String(n).padStart(4)} x ${kind}`)
    if (sorted.length > 10) console.error(`  ... and ${sorted.length - 10} other kinds`)
    const [who, kind, stack] = this.failures[0]
    console.error(`  first failure, ${who}: ${kind}\n${stack}`)
    process.exit(1)
  }
}

module.exports = { dsn, expect, expectError, versionOf, within, Tally, WrongAnswer }
