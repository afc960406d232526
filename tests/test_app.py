import io
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import app, qa
from bot.config import Settings
from bot.folder import FolderState
from bot.models import Alert, Article, ChatRef, Post, Sent
from bot.outbox import Outbox
from bot.store import Store

from .conftest import SEED

CHAT = ChatRef("console", "local")


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


class RecordingChat:
    platform = "console"

    def __init__(self) -> None:
        self.sent: list[tuple[ChatRef, Post]] = []

    async def start(self, handler: object) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat: ChatRef, post: Post) -> Sent:
        self.sent.append((chat, post))
        return Sent(("1",))


async def test_console_run_prints_digest_answers_and_exits_zero(settings: Settings) -> None:
    shutil.copy2(SEED, settings.articles.folder)
    out = io.StringIO()
    code = await app.run(settings, lines=lines("who attends from Germany?\n", "/help\n"), out=out)
    text = out.getvalue()
    assert code == 0
    assert text.index("Conflict digest") < text.index("Michaelis") < text.index("/subscribe")
    assert "Source:" in text


async def test_folder_scan_ingests_new_files_once_and_alerts(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    folder = settings.articles.folder
    chat = RecordingChat()
    await store.subscribe(CHAT, "en")
    outbox = Outbox(store, {"console": chat})
    index = qa.Index.build([])
    source, state = app.folder_source(settings), FolderState()
    await app.scan_folder(source, store, state, index, outbox)
    assert await store.count_articles() == 0
    shutil.copy2(SEED, folder)  # keeps the seed's old mtime: settled, read at once
    await app.scan_folder(source, store, state, index, outbox)
    await app.scan_folder(source, store, state, index, outbox)
    await outbox.drain()
    assert await store.count_articles() == 1
    alerts = [post for _, post in chat.sent if isinstance(post, Alert)]
    assert len(alerts) == 1 and alerts[0].item.title.startswith("Vertreter der 30 Nato-Staaten")
    assert index.get(alerts[0].item.article_id) is not None
    [row] = await store.deliveries("sent")
    assert row["latency_ms"] is not None and row["latency_ms"] >= 0


@pytest.mark.reliability
async def test_run_starts_and_reads_the_good_file_beside_a_poison_file(settings: Settings) -> None:
    # The fault: a 200,000-deep JSON array raised RecursionError out of the start-up scan.
    shutil.copy2(SEED, settings.articles.folder)
    deep = settings.articles.folder / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    os.utime(deep, (0, 0))
    out = io.StringIO()
    code = await app.run(settings, lines=lines(), out=out)
    assert code == 0
    assert "Vertreter der 30 Nato-Staaten" in out.getvalue()


async def test_nightly_retrain_waits_for_enough_new_judgements(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    from bot.learn import FeedbackModel

    model_path = tmp_path / "data" / "feedback-model.json"
    classifier = settings.classifier.model_copy(
        update={"feedback_model": model_path, "retrain_min_judgements": 20}
    )
    configured = settings.model_copy(update={"classifier": classifier})
    assert await app.retrain_job(store, settings) == "off"  # no model path configured
    batch = [
        Article(f"w{i}", f"Air strikes hit town {i}", "Fighting and shelling.", "en")
        for i in range(12)
    ] + [
        Article(f"s{i}", f"Cup final {i} tonight", "The striker scored twice.", "en")
        for i in range(12)
    ]
    await store.add_articles(batch)
    for article in batch[:10]:
        await store.add_feedback(article.id, ChatRef("test", "c"), "u", True)
    assert await app.retrain_job(store, configured) == "waiting: 10 new judgements of 20"
    assert not model_path.exists()
    for article in batch:
        await store.add_feedback(article.id, ChatRef("test", "c"), "u", article.id[0] == "w")
    assert await app.retrain_job(store, configured) == "re-trained on 24 judgements"
    model = FeedbackModel.load(model_path)
    assert model.n_examples == 24 and model.n_positive == 12
    # Nothing new since the model was written: it is left alone.
    assert (await app.retrain_job(store, configured)).startswith("waiting: 0 new")
