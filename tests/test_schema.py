import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.db import create_engine
from bot.schema import MIGRATIONS, metadata


def _layout(conn: Connection) -> dict[str, set[str]]:
    inspector = sa.inspect(conn)
    return {
        name: {c["name"] for c in inspector.get_columns(name)}
        for name in inspector.get_table_names()
    }


async def test_every_step_is_idempotent_and_builds_the_declared_tables(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    try:
        async with engine.begin() as conn:
            for step in MIGRATIONS:
                await conn.run_sync(step)
            first = await conn.run_sync(_layout)
            # Migration 1 builds from the live metadata: later steps must find nothing to do.
            for step in MIGRATIONS:
                await conn.run_sync(step)
            assert await conn.run_sync(_layout) == first
    finally:
        await engine.dispose()
    for table in metadata.sorted_tables:
        if table.name != "schema_version":
            assert first[table.name] == {c.name for c in table.columns}, table.name
