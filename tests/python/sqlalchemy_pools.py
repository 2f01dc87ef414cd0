"""SQLAlchemy 2 through weir with both PostgreSQL dialects at once: postgresql+psycopg
from a thread pool, postgresql+asyncpg from asyncio tasks. Each engine has a QueuePool
of several connections, all busy at the same time, so together they are more clients than
weir has servers. The ORM and Core create a table, insert, update, roll back and read back.

Usage: sqlalchemy_pools.py JOBS ROUNDS (WEIR_TEST_DSN in the environment).
"""

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy
from sqlalchemy import String, create_engine, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from weirtest import Tally, dsn, expect

POOL = dict(pool_size=4, max_overflow=0, pool_timeout=60, pool_pre_ping=True)
ORM_ROWS = 3
CORE_ROWS = 2


class Base(DeclarativeBase):
    pass


class Order(Base):
    """One row written by one job of one dialect."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    dialect: Mapped[str] = mapped_column(String(20))
    job: Mapped[int]
    round: Mapped[int]
    qty: Mapped[int]
    note: Mapped[str] = mapped_column(String(100))


def url(driver: str) -> str:
    return dsn().replace("postgresql://", f"postgresql+{driver}://", 1)


def psycopg_job(engine, job: int, rounds: int, tally: Tally) -> None:
    dialect = "psycopg"
    for r in range(rounds):
        with Session(engine) as session, session.begin():
            session.add_all(
                [Order(dialect=dialect, job=job, round=r, qty=q, note=f"{job}/{r}/{q}") for q in range(ORM_ROWS)]
            )
        with Session(engine) as session:
            got = session.scalars(
                select(Order).where(Order.dialect == dialect, Order.job == job, Order.round == r).order_by(Order.qty)
            ).all()
            expect("ORM rows", [(o.qty, o.note) for o in got], [(q, f"{job}/{r}/{q}") for q in range(ORM_ROWS)])
            for o in got:
                o.qty += 100
            session.commit()
        tally.ok("psycopg: ORM insert, select, update")

        with engine.begin() as conn:
            conn.execute(
                insert(Order),
                [dict(dialect=dialect, job=job, round=r, qty=1000 + q, note="core") for q in range(CORE_ROWS)],
            )
        with engine.connect() as conn:
            conn.execute(update(Order).where(Order.dialect == dialect, Order.job == job).values(qty=-5))
            conn.rollback()
            n = conn.execute(
                select(func.count()).select_from(Order).where(Order.dialect == dialect, Order.job == job)
            ).scalar_one()
            expect("rows for this job", n, (r + 1) * (ORM_ROWS + CORE_ROWS))
            conn.rollback()
        with Session(engine) as session:
            session.add(Order(dialect=dialect, job=job, round=r, qty=-1, note="rolled back"))
            session.flush()
            session.rollback()
        tally.ok("psycopg: Core executemany, count, rollback")


async def asyncpg_job(engine, job: int, rounds: int, tally: Tally) -> None:
    dialect = "asyncpg"
    for r in range(rounds):
        async with AsyncSession(engine) as session, session.begin():
            session.add_all(
                [Order(dialect=dialect, job=job, round=r, qty=q, note=f"{job}/{r}/{q}") for q in range(ORM_ROWS)]
            )
        async with AsyncSession(engine) as session:
            got = (
                await session.scalars(
                    select(Order).where(Order.dialect == dialect, Order.job == job, Order.round == r).order_by(Order.qty)
                )
            ).all()
            expect("ORM rows", [(o.qty, o.note) for o in got], [(q, f"{job}/{r}/{q}") for q in range(ORM_ROWS)])
            for o in got:
                o.qty += 100
            await session.commit()
        tally.ok("asyncpg: ORM insert, select, update")

        async with engine.begin() as conn:
            await conn.execute(
                insert(Order),
                [dict(dialect=dialect, job=job, round=r, qty=1000 + q, note="core") for q in range(CORE_ROWS)],
            )
        async with engine.connect() as conn:
            await conn.execute(update(Order).where(Order.dialect == dialect, Order.job == job).values(qty=-5))
            await conn.rollback()
            n = (
                await conn.execute(
                    select(func.count()).select_from(Order).where(Order.dialect == dialect, Order.job == job)
                )
            ).scalar_one()
            expect("rows for this job", n, (r + 1) * (ORM_ROWS + CORE_ROWS))
            await conn.rollback()
        async with AsyncSession(engine) as session:
            session.add(Order(dialect=dialect, job=job, round=r, qty=-1, note="rolled back"))
            await session.flush()
            await session.rollback()
        tally.ok("asyncpg: Core executemany, count, rollback")


async def run_asyncpg(jobs: int, rounds: int, tally: Tally) -> None:
    engine = create_async_engine(url("asyncpg"), **POOL)
    try:

        async def guarded(job: int) -> None:
            try:
                await asyncpg_job(engine, job, rounds, tally)
            except Exception as error:  # reported with the others below
                tally.failed(f"asyncpg job {job}", error)

        await asyncio.gather(*(guarded(job) for job in range(jobs)))
    finally:
        await engine.dispose()


def run_psycopg(jobs: int, rounds: int, tally: Tally) -> None:
    engine = create_engine(url("psycopg"), **POOL)
    try:

        def guarded(job: int) -> None:
            try:
                psycopg_job(engine, job, rounds, tally)
            except Exception as error:  # reported with the others below
                tally.failed(f"psycopg job {job}", error)

        with ThreadPoolExecutor(max_workers=2 * POOL["pool_size"]) as threads:
            list(threads.map(guarded, range(jobs)))
    finally:
        engine.dispose()


def final_check(jobs: int, rounds: int, tally: Tally) -> None:
    engine = create_engine(url("psycopg"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Order.dialect, func.count(), func.sum(Order.qty)).group_by(Order.dialect).order_by(Order.dialect)
            ).all()
    finally:
        engine.dispose()
    per_job = rounds * (ORM_ROWS + CORE_ROWS)
    qty = rounds * (sum(100 + q for q in range(ORM_ROWS)) + sum(1000 + q for q in range(CORE_ROWS)))
    want = [(d, jobs * per_job, jobs * qty) for d in ("asyncpg", "psycopg")]
    expect("orders per dialect", [tuple(row) for row in rows], want)
    tally.ok("final contents of orders")


async def main(jobs: int, rounds: int) -> Tally:
    tally = Tally()
    engine = create_engine(url("psycopg"))
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()
    # Both dialects at once: the psycopg engine from threads, the asyncpg one from tasks.
    await asyncio.gather(
        asyncio.to_thread(run_psycopg, jobs, rounds, tally),
        run_asyncpg(jobs, rounds, tally),
    )
    if not tally.failures:
        try:
            final_check(jobs, rounds, tally)
        except Exception as error:
            tally.failed("final check", error)
    print(f"SQLAlchemy {sqlalchemy.__version__}: {jobs} jobs x {rounds} rounds per dialect,"
          f" QueuePool of {POOL['pool_size']} per engine")
    return tally


if __name__ == "__main__":
    tally = asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    tally.report("SQLAlchemy 2 with postgresql+psycopg and postgresql+asyncpg")
