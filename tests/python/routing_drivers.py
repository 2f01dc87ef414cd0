"""Real drivers through weir with read/write splitting on (a primary and a streaming
replica behind it, `routing.transactions = "first_statement"`): statements report the
port of the server that ran them, and the script checks each landed where it should, and
that a client always reads what it just committed.

Each client has two connections: a reader, which never writes and so always reads from
the replica, and a writer, whose reads right after its writes may go to the primary
(read-your-writes) but must always see those writes.

Usage: routing_drivers.py PRIMARY_PORT REPLICA_PORT CLIENTS ROUNDS (WEIR_TEST_DSN set).
The table `routed (client int, round int, driver text)` and the sequence `routed_seq`
exist on the primary.
"""

import asyncio
import sys
import threading

import asyncpg
import psycopg

from weirtest import Tally, dsn, expect

PORT = "SELECT current_setting('port')"


async def asyncpg_client(i: int, rounds: int, primary: str, replica: str, tally: Tally) -> None:
    # asyncpg's statement cache: each query is a named prepared statement, prepared on
    # whichever server its transaction landed on and re-prepared by weir elsewhere.
    reader = await asyncpg.connect(dsn(), timeout=60)
    writer = await asyncpg.connect(dsn(), timeout=60)
    try:
        for r in range(rounds):
            expect("asyncpg read", await reader.fetchval(PORT), replica)
            expect("asyncpg read with a parameter", await reader.fetchval(PORT + " || $1::text", ""), replica)
            async with reader.transaction(readonly=True):
                expect("asyncpg read-only transaction", await reader.fetchval(PORT), replica)
            tally.ok("asyncpg reads on the replica")
            async with writer.transaction():
                port = await writer.fetchval(
                    "INSERT INTO routed (client, round, driver) VALUES ($1, $2, 'asyncpg')"
                    " RETURNING current_setting('port')",
                    i,
                    r,
                )
                expect("asyncpg write", port, primary)
            tally.ok("asyncpg writes on the primary")
            n = await writer.fetchval(
                "SELECT count(*) FROM routed WHERE client = $1 AND round = $2 AND driver = 'asyncpg'", i, r
            )
            expect("asyncpg reads its own write", n, 1)
            tally.ok("asyncpg read its own write at once")
            row = await writer.fetchrow("SELECT current_setting('port'), nextval('routed_seq')")
            expect("asyncpg nextval", row[0], primary)
            tally.ok("asyncpg nextval on the primary")
    finally:
        await reader.close()
        await writer.close()


async def asyncpg_all(clients: int, rounds: int, primary: str, replica: str, tally: Tally) -> None:
    async def guarded(i: int) -> None:
        try:
            await asyncpg_client(i, rounds, primary, replica, tally)
        except Exception as e:  # noqa: BLE001 -- every failure is reported
            tally.failed(f"asyncpg client {i}", e)

    await asyncio.gather(*(guarded(i) for i in range(clients)))


def psycopg_client(i: int, rounds: int, primary: str, replica: str, tally: Tally) -> None:
    try:
        # Not autocommit: psycopg sends BEGIN before the first statement of each
        # transaction; first_statement routing lets such reads still reach the replica.
        with psycopg.connect(dsn(), prepare_threshold=0) as reader, \
                psycopg.connect(dsn(), prepare_threshold=0) as writer:
            for r in range(rounds):
                expect("psycopg read in a transaction", reader.execute(PORT).fetchone()[0], replica)
                expect("psycopg second read", reader.execute(PORT + " || %s", ("",)).fetchone()[0], replica)
                reader.commit()
                tally.ok("psycopg transactions of reads on the replica")
                port = writer.execute(
                    "INSERT INTO routed (client, round, driver) VALUES (%s, %s, 'psycopg')"
                    " RETURNING current_setting('port')",
                    (i, r),
                ).fetchone()[0]
                expect("psycopg write", port, primary)
                expect("psycopg read after a write, same transaction", writer.execute(PORT).fetchone()[0], primary)
                writer.commit()
                tally.ok("psycopg transactions that write on the primary")
                n = writer.execute(
                    "SELECT count(*) FROM routed WHERE client = %s AND round = %s AND driver = 'psycopg'", (i, r)
                ).fetchone()[0]
                writer.commit()
                expect("psycopg reads its own write", n, 1)
                tally.ok("psycopg read its own write at once")
        with psycopg.connect(dsn(), autocommit=True) as conn:
            expect("psycopg autocommit read", conn.execute(PORT).fetchone()[0], replica)
            tally.ok("psycopg autocommit read on the replica")
    except Exception as e:  # noqa: BLE001 -- every failure is reported
        tally.failed(f"psycopg client {i}", e)


def main() -> None:
    primary, replica, clients, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    tally = Tally()
    threads = [
        threading.Thread(target=psycopg_client, args=(i, rounds, primary, replica, tally))
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    asyncio.run(asyncpg_all(clients, rounds, primary, replica, tally))
    for t in threads:
        t.join()
    tally.report(f"routing: {clients} asyncpg + {clients} psycopg clients x {rounds} rounds")


if __name__ == "__main__":
    main()
