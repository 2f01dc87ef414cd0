"""Two things psycopg 3 does on its own, each checked alone on a pool of one server so that
every client shares it. Both pass against PostgreSQL directly.

  deallocate-all   After a rollback, psycopg drops its prepared statements with a simple
                   Query `DEALLOCATE ALL`. Afterwards that client must be able to prepare
                   the same statement again, and another client's statement on the same
                   server must still work.
  pipeline-commit  executemany() runs in pipeline mode: Parse/Bind/Execute..., Sync, then
                   Flush. A `COMMIT` (simple Query) ends the transaction; the client is idle,
                   so another client must get the server.

Usage: psycopg_cases.py CASE (WEIR_TEST_DSN in the environment).
"""

import sys
import time

import psycopg

from weirtest import Tally, dsn, expect


def deallocate_all(tally: Tally) -> None:
    with psycopg.connect(dsn(), prepare_threshold=0, autocommit=True) as other, psycopg.connect(
        dsn(), prepare_threshold=0
    ) as conn:
        expect("other: prepared", other.execute("SELECT %s::int * 10", (1,)).fetchone()[0], 10)
        expect("prepared", conn.execute("SELECT %s::int + 1", (1,)).fetchone()[0], 2)
        # psycopg: ROLLBACK, then DEALLOCATE ALL (it had a prepared statement).
        conn.rollback()
        tally.ok("rollback, which psycopg follows with DEALLOCATE ALL")
        expect("prepared again after DEALLOCATE ALL", conn.execute("SELECT %s::int + 1", (2,)).fetchone()[0], 3)
        conn.commit()
        tally.ok("same statement prepared again by the client that deallocated")
        expect("other: statement still usable", other.execute("SELECT %s::int * 10", (2,)).fetchone()[0], 20)
        expect("other: the text it shares", other.execute("SELECT %s::int + 1", (5,)).fetchone()[0], 6)
        tally.ok("another client's statements on the same server")


def pipeline_commit(tally: Tally) -> None:
    with psycopg.connect(dsn()) as conn:
        conn.execute("CREATE TABLE piped (n int)")
        conn.commit()
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO piped VALUES (%s)", [(n,) for n in range(3)])
        conn.commit()
        tally.ok("executemany (pipeline: Sync, Flush) then COMMIT")
        # `conn` is idle and stays connected: the server must be free for `other`.
        started = time.monotonic()
        with psycopg.connect(dsn(), autocommit=True) as other:
            expect("rows seen by another client", other.execute("SELECT count(*) FROM piped").fetchone()[0], 3)
        print(f"  another client got the server after {time.monotonic() - started:.2f} s")
        tally.ok("another client gets the only server")


CASES = {"deallocate-all": deallocate_all, "pipeline-commit": pipeline_commit}

if __name__ == "__main__":
    case = sys.argv[1]
    tally = Tally()
    try:
        CASES[case](tally)
    except Exception as error:
        tally.failed(case, error)
    tally.report(f"psycopg {psycopg.__version__}: {case}")
