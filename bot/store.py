"""The opened database: one engine, migrated, and the repositories over it.

`catalog`, `subscriptions`, `sources` and `ledger` share the engine. Only the wiring (the app,
and the CLI's commands) opens the store; it hands each consumer just the repositories (or the
engine) that consumer uses, never the store itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from bot import db, schema
from bot.catalog import Catalog
from bot.ledger import Ledger
from bot.sources import Sources
from bot.subscriptions import Subscriptions


class Store:
    """The repositories over one engine; open with `async with Store.open(url) as store`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.catalog = Catalog(engine)
        self.subscriptions = Subscriptions(engine)
        self.sources = Sources(engine)
        self.ledger = Ledger(engine, self.catalog)

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[Store]:
        """Connect, upgrade the schema, and dispose of the engine on exit."""
        engine = db.create_engine(url)
        try:
            store = cls(engine)
            await store.migrate()
            yield store
        finally:
            await engine.dispose()

    async def migrate(self) -> int:
        """Apply pending schema upgrades; return the schema version now in force."""
        return await db.migrate(self.engine, schema.MIGRATIONS, schema.schema_version)
