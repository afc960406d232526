"""Move a deployment between databases: every table of the schema to JSON Lines and back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import datetime
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot import db, schema, search
from bot.catalog import article_from_row

FORMAT = "newsbot-export"
FORMAT_VERSION = 1
BATCH = 1000


class TransferError(ValueError):
    """An export file or a target database that cannot be used; the message says why."""


def tables() -> list[sa.Table]:
    """Every table of the schema, parents before children (foreign keys), versions aside."""
    return [
        table for table in schema.metadata.sorted_tables if table.name != schema.schema_version.name
    ]


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _decoder(table: sa.Table) -> dict[str, bool]:
    """Which columns of `table` hold timestamps (stored as ISO strings in the file)."""
    return {
        column.name: isinstance(column.type, db.UTCDateTime | sa.DateTime)
        for column in table.columns
    }


async def export_rows(engine: AsyncEngine) -> AsyncIterator[dict[str, Any]]:
    """The header line, then one record per row of every table."""
    async with engine.connect() as conn:
        version = (
            await conn.execute(sa.select(sa.func.max(schema.schema_version.c.version)))
        ).scalar()
        yield {"format": FORMAT, "version": FORMAT_VERSION, "schema": version}
        for table in tables():
            key = list(table.primary_key.columns) or list(table.columns)
            result = await conn.stream(sa.select(table).order_by(*key))
            async for row in result:
                yield {
                    "table": table.name,
                    "row": {name: _encode(value) for name, value in row._mapping.items()},
                }


async def export(engine: AsyncEngine, out: TextIO) -> dict[str, int]:
    """Write the whole database to `out`; rows written per table."""
    counts: dict[str, int] = {}
    async for record in export_rows(engine):
        if "table" in record:
            counts[record["table"]] = counts.get(record["table"], 0) + 1
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    # The last line counts what came before it: a truncated copy is refused on import.
    out.write(json.dumps({"end": True, "rows": counts}) + "\n")
    return counts


async def reindex(conn: AsyncConnection) -> int:
    """Rebuild the full-text index of every stored article (it is derived, so not exported)."""
    articles = schema.articles
    done = 0
    result = await conn.stream(sa.select(articles).order_by(articles.c.id))
    async for chunk in result.partitions(BATCH):
        batch = [article_from_row(row._mapping) for row in chunk]
        await conn.run_sync(search.put, batch, search.documents(batch))
        done += len(batch)
    return done


def read_records(lines: Iterable[str], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, row) pairs of an export file, checking its header; errors name file and line."""
    known = {table.name for table in tables()}
    header_seen = ended = False
    counts: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise TransferError(f"{where}:{number}: not JSON ({exc})") from None
        if not header_seen:
            if not isinstance(record, dict) or record.get("format") != FORMAT:
                raise TransferError(f"{where}:{number}: not a newsbot export (no header line)")
            if record.get("version") != FORMAT_VERSION:
                raise TransferError(
                    f"{where}:{number}: export format {record.get('version')} is not supported"
                )
            version = record.get("schema") or 0
            if not isinstance(version, int) or version > len(schema.MIGRATIONS):
                raise TransferError(
                    f"{where}:{number}: exported by a newer newsbot (schema {version}, this "
                    f"version knows {len(schema.MIGRATIONS)}); upgrade newsbot first"
                )
            header_seen = True
            continue
        if record.get("end") is True:
            if record.get("rows") != counts:
                raise TransferError(
                    f"{where}:{number}: the rows read ({counts}) do not match the export's "
                    f"count ({record.get('rows')}); the file is damaged"
                )
            ended = True
            continue
        if ended:
            raise TransferError(f"{where}:{number}: data after the end of the export")
        table, row = record.get("table"), record.get("row")
        if table not in known or not isinstance(row, dict):
            raise TransferError(f"{where}:{number}: unknown table {table!r}")
        counts[table] = counts.get(table, 0) + 1
        yield table, row
    if not header_seen:
        raise TransferError(f"{where}: empty file")
    if not ended:
        raise TransferError(f"{where}: the export ends early (no end line): the file is truncated")


async def import_rows(
    engine: AsyncEngine, records: Iterable[tuple[str, dict[str, Any]]]
) -> dict[str, int]:
    """Insert exported rows into an empty database in one transaction; rows per table."""
    by_name = {table.name: table for table in tables()}
    timestamps = {name: _decoder(table) for name, table in by_name.items()}
    counts: dict[str, int] = {}
    async with engine.begin() as conn:
        for table in by_name.values():
            if (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar():
                raise TransferError(
                    f"the target database is not empty (table {table.name} has rows); "
                    "import into a new database"
                )
        pending: dict[str, list[dict[str, Any]]] = {}
        order = list(by_name)

        async def flush(upto: int) -> None:
            # Parents first: a child row is only written after every table before it.
            for name in order[: upto + 1]:
                rows = pending.pop(name, [])
                if rows:
                    await conn.execute(by_name[name].insert(), rows)

        for name, row in records:
            stamp = timestamps[name]
            values = {
                key: datetime.fromisoformat(value)
                if stamp.get(key) and isinstance(value, str)
                else value
                for key, value in row.items()
                if key in stamp
            }
            pending.setdefault(name, []).append(values)
            counts[name] = counts.get(name, 0) + 1
            if len(pending[name]) >= BATCH:
                await flush(order.index(name))
        await flush(len(order) - 1)
        # An export from before schema step 7 has no owner rows: the feeds get theirs, as an
        # upgraded database does (without them, no feed would be polled).
        await conn.run_sync(schema.own_feeds)
        # Likewise before schema step 9: each article's own source becomes its first link.
        await conn.run_sync(schema.link_article_sources)
        # And before step 11: the folder files' sources get their host and folder.
        await conn.run_sync(schema.key_folder_sources)
        if conn.dialect.name == "postgresql":
            # Rows kept their ids; the sequences must continue after them.
            for table in by_name.values():
                id_column = table.c.get("id")
                if id_column is not None and isinstance(id_column.type, sa.Integer):
                    await conn.execute(
                        sa.text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                        )
                    )
        await reindex(conn)
    return counts
