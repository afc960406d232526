import sqlalchemy as sa

from bot.models import Article
from bot.schema import MIGRATIONS
from bot.store import Store


def art(id: str, text: str = "Fighting continued.", title: str = "T") -> Article:
    return Article(id=id, title=title, text=text, lang="en", source="test")


async def test_schema_is_versioned_and_reopening_keeps_data(settings) -> None:  # type: ignore[no-untyped-def]
    url = settings.storage.url()
    async with Store.open(url) as first:
        await first.catalog.add_articles([art("keep")])
        assert await first.migrate() == len(MIGRATIONS)
    async with Store.open(url) as second:
        assert await second.catalog.get_article("keep") is not None
        async with second.engine.connect() as conn:
            versions = (
                (await conn.execute(sa.text("SELECT version FROM schema_version"))).scalars().all()
            )
        assert list(versions) == list(range(1, len(MIGRATIONS) + 1))
