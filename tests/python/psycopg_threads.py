"""psycopg 3 through weir with prepare_threshold=0, so every query is prepared server-side
on first use, from many threads at once. Half the connections are in autocommit mode, half
use psycopg's implicit transactions with explicit commit and rollback.

Each connection also keeps psycopg's statement cache tiny (prepared_max = 4) while cycling
through more statements than that, so psycopg closes statements (a protocol-level Close)
and prepares them again under new names; and it makes errors in the middle of its work
(a failing Execute of a prepared statement, a syntax error, a unique violation in a
savepoint) and must keep working after each.

Usage: psycopg_threads.py THREADS ROUNDS (WEIR_TEST_DSN in the environment).
"""

import sys
import threading
from collections import Counter

import psycopg
from psycopg import errors

from weirtest import Tally, WrongAnswer, dsn, expect

# More statements than prepared_max, used in turn: psycopg evicts and re-prepares them.
CYCLED = [f"SELECT %s::int + {k}" for k in range(6)]
MANY = 3


def setup() -> None:
    with psycopg.connect(dsn(), autocommit=True, connect_timeout=30) as conn:
        conn.execute(
            "CREATE TABLE ledger (worker int, round int, kind text, amount int,"
            " PRIMARY KEY (worker, round, kind))"
        )


def worker(i: int, rounds: int, tally: Tally) -> None:
    autocommit = i % 2 == 0
    mode = "autocommit" if autocommit else "implicit transactions"
    with psycopg.connect(
        dsn(), prepare_threshold=0, autocommit=autocommit, connect_timeout=60
    ) as conn:
        conn.prepared_max = 4

        def settle() -> None:
            """Ends psycopg's implicit transaction, if this connection has them."""
            if not autocommit:
                conn.commit()

        for r in range(rounds):
            row = conn.execute("SELECT %s::int * %s::int, %s::text", (i, r, f"w{i}")).fetchone()
            expect("parametrised SELECT", row, (i * r, f"w{i}"))
            for k, sql in enumerate(CYCLED):
                expect(sql, conn.execute(sql, (r,)).fetchone()[0], r + k)
            settle()
            tally.ok(f"prepared SELECTs, cache evicting ({mode})")

            with conn.transaction():
                conn.execute("INSERT INTO ledger VALUES (%s, %s, 'kept', %s)", (i, r, 10 * r))
                total = conn.execute(
                    "SELECT sum(amount)::int FROM ledger WHERE worker = %s AND kind = 'kept'", (i,)
                ).fetchone()[0]
                expect("sum inside transaction", total, sum(10 * x for x in range(r + 1)))
            tally.ok(f"transaction committed ({mode})")

            with conn.transaction():
                conn.execute("INSERT INTO ledger VALUES (%s, %s, 'dropped', 1)", (i, r))
                raise psycopg.Rollback()
            tally.ok(f"transaction rolled back ({mode})")

            with conn.transaction():
                conn.execute("INSERT INTO ledger VALUES (%s, %s, 'outer', 1)", (i, r))
                try:
                    with conn.transaction():
                        conn.execute("INSERT INTO ledger VALUES (%s, %s, 'outer', 2)", (i, r))
                    raise WrongAnswer("duplicate key was accepted")
                except errors.UniqueViolation:
                    pass
                count = conn.execute(
                    "SELECT count(*)::int FROM ledger WHERE worker = %s AND round = %s AND kind = 'outer'",
                    (i, r),
                ).fetchone()[0]
                expect("rows after the savepoint rolled back", count, 1)
            tally.ok(f"unique violation inside a savepoint ({mode})")

            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO ledger VALUES (%s, %s, %s, %s)",
                    [(i, r, f"many{n}", n) for n in range(MANY)],
                )
            settle()
            tally.ok(f"executemany INSERT ({mode})")

            # An error in the middle of work: the Execute of a prepared statement fails.
            try:
                conn.execute("SELECT 10 / %s::int", (0,))
                raise WrongAnswer("division by zero did not fail")
            except errors.DivisionByZero:
                pass
            if not autocommit:
                # psycopg answers a ROLLBACK it did not send itself with DEALLOCATE ALL.
                conn.execute("ROLLBACK")
            expect("same statement, good argument", conn.execute("SELECT 10 / %s::int", (5,)).fetchone()[0], 2)
            try:
                conn.execute("SELEC 1")
                raise WrongAnswer("syntax error did not fail")
            except errors.SyntaxError:
                pass
            if not autocommit:
                conn.rollback()
            expect("after errors", conn.execute("SELECT %s::text", ("still here",)).fetchone()[0], "still here")
            settle()
            tally.ok(f"errors mid-work, connection keeps working ({mode})")

            with conn.transaction():
                with conn.cursor(name=f"cursor_{i}") as cur:
                    cur.itersize = 7
                    cur.execute("SELECT g FROM generate_series(1, %s) AS g", (40,))
                    expect("server-side cursor sum", sum(row[0] for row in cur), 820)
            tally.ok(f"server-side cursor in a transaction ({mode})")


def final_check(workers: int, rounds: int, tally: Tally) -> None:
    with psycopg.connect(dsn(), autocommit=True, connect_timeout=30) as conn:
        got = Counter()
        for worker_, kind, count, total in conn.execute(
            "SELECT worker, kind, count(*)::int, sum(amount)::int FROM ledger GROUP BY 1, 2"
        ):
            got[(worker_, kind)] = (count, total)
    want = Counter()
    for i in range(workers):
        want[(i, "kept")] = (rounds, sum(10 * r for r in range(rounds)))
        want[(i, "outer")] = (rounds, rounds)
        for n in range(MANY):
            want[(i, f"many{n}")] = (rounds, n * rounds)
    expect("ledger contents", dict(got), dict(want))
    tally.ok("final ledger contents")


def main(workers: int, rounds: int) -> Tally:
    setup()
    tally = Tally()

    def guarded(i: int) -> None:
        try:
            worker(i, rounds, tally)
        except Exception as error:  # reported with the others below
            tally.failed(f"thread {i}", error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not tally.failures:
        try:
            final_check(workers, rounds, tally)
        except Exception as error:
            tally.failed("final check", error)
    print(f"psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}, {psycopg.pq.__impl__}):"
          f" {workers} threads x {rounds} rounds")
    return tally


if __name__ == "__main__":
    tally = main(int(sys.argv[1]), int(sys.argv[2]))
    tally.report("psycopg 3 with prepare_threshold=0")
