"""The store's repositories in the order consumers take them, for call sites in tests."""

from __future__ import annotations

from bot.catalog import Catalog
from bot.ledger import Ledger
from bot.sources import Sources
from bot.store import Store
from bot.subscriptions import Subscriptions


def routing(store: Store) -> tuple[Sources, Catalog, Subscriptions, Ledger]:
    """What routing and folder scans read and write (sources: whose own feed an article is)."""
    return store.sources, store.catalog, store.subscriptions, store.ledger


def digesting(store: Store) -> tuple[Catalog, Subscriptions, Ledger]:
    """What digests read and write."""
    return store.catalog, store.subscriptions, store.ledger


def repositories(store: Store) -> tuple[Sources, Catalog, Subscriptions, Ledger]:
    """All four, as feed polls, the job sync and the conversation take them."""
    return store.sources, store.catalog, store.subscriptions, store.ledger
