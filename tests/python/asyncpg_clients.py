"""asyncpg through weir: many concurrent connections, each with asyncpg's default
statement cache, so every parametrised query becomes a named prepared statement that
later transactions use on whichever server weir picks.

Usage: asyncpg_clients.py CLIENTS ROUNDS (WEIR_TEST_DSN in the environment).
"""

import asyncio
import sys

import asyncpg

from weirtest import Tally, dsn, expect


class Rollback(Exception):
    """Raised inside `conn.transaction()` to make asyncpg roll it back."""


ROWS_PER_ROUND = 4


async def setup() -> None:
    conn = await asyncpg.connect(dsn(), timeout=30)
    try:
        await conn.execute(
            "CREATE TABLE items (client int, round int, n int, note text,"
            " PRIMARY KEY (client, round, n));"
            " CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')"
        )
    finally:
        await conn.close()


async def client(i: int, rounds: int, tally: Tally, backends: set) -> None:
    # statement_cache_size is left at its default (100): asyncpg prepares named statements.
    conn = await asyncpg.connect(dsn(), timeout=60)
    try:
        # An explicitly prepared statement, used in every round (so in many transactions).
        triple = await conn.prepare("SELECT $1::int * 3")
        for r in range(rounds):
            expect("fetchval $1 + $2", await conn.fetchval("SELECT $1::int + $2", i, r), i + r)
            tally.ok("fetchval SELECT $1::int + $2")

            rows = await conn.fetch(
                "SELECT g, $1::text || g FROM generate_series(1, $2::int) AS g", f"c{i}-", r + 3
            )
            expect("fetch rows", [tuple(row) for row in rows], [(g, f"c{i}-{g}") for g in range(1, r + 4)])
            tally.ok("fetch of generate_series rows")

            await conn.executemany(
                "INSERT INTO items (client, round, n, note) VALUES ($1, $2, $3, $4)",
                [(i, r, n, f"{i}/{r}/{n}") for n in range(ROWS_PER_ROUND)],
            )
            count = await conn.fetchval(
                "SELECT count(*) FROM items WHERE client = $1 AND round = $2", i, r
            )
            expect("rows after executemany", count, ROWS_PER_ROUND)
            tally.ok("executemany INSERT, then count")

            async with conn.transaction():
                await conn.execute(
                    "UPDATE items SET note = note || '!' WHERE client = $1 AND round = $2", i, r
                )
                notes = await conn.fetch(
                    "SELECT note FROM items WHERE client = $1 AND round = $2 ORDER BY n", i, r
                )
                expect("notes in transaction", [row["note"] for row in notes],
                       [f"{i}/{r}/{n}!" for n in range(ROWS_PER_ROUND)])
                backends.add(await conn.fetchval("SELECT pg_backend_pid()"))
            tally.ok("transaction block: UPDATE, SELECT, commit")

            try:
                async with conn.transaction():
                    deleted = await conn.execute("DELETE FROM items WHERE client = $1", i)
                    expect("DELETE status", deleted, f"DELETE {(r + 1) * ROWS_PER_ROUND}")
                    raise Rollback()
            except Rollback:
                pass
            count = await conn.fetchval("SELECT count(*) FROM items WHERE client = $1", i)
            expect("rows after rolled-back DELETE", count, (r + 1) * ROWS_PER_ROUND)
            tally.ok("transaction block rolled back")

            expect("prepared triple", await triple.fetchval(r), 3 * r)
            tally.ok("conn.prepare() statement reused")

            # A user-defined type: asyncpg introspects it with its own prepared query.
            expect("enum", await conn.fetchval("SELECT $1::mood", "happy"), "happy")
            tally.ok("enum parameter (type introspection)")
    finally:
        await conn.close()


async def main(clients: int, rounds: int) -> Tally:
    await setup()
    tally = Tally()
    backends = set()

    async def guarded(i: int) -> None:
        try:
            await client(i, rounds, tally, backends)
        except Exception as error:  # reported with the others below
            tally.failed(f"client {i}", error)

    await asyncio.gather(*(guarded(i) for i in range(clients)))

    try:
        conn = await asyncpg.connect(dsn(), timeout=30)
        try:
            total = await conn.fetchval("SELECT count(*) FROM items")
        finally:
            await conn.close()
        if not tally.failures:
            expect("rows in items", total, clients * rounds * ROWS_PER_ROUND)
            tally.ok("final row count")
    except Exception as error:
        tally.failed("final check", error)
    print(f"asyncpg {asyncpg.__version__}: {clients} connections x {rounds} rounds,"
          f" {len(backends)} distinct server backends seen")
    return tally


if __name__ == "__main__":
    tally = asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    tally.report("asyncpg with its statement cache")
