"""Wire the service: store, HTTP client, scheduler, outbox and chat adapters, opened and closed."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TextIO
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import __version__, articles, commands, feeds, jobs, qa, schedule, search
from bot import folder as folder_files
from bot.catalog import Catalog
from bot.chat import ChatAdapter, Handler, Leads, Pace
from bot.chat.console import CHAT as CONSOLE_CHAT
from bot.chat.console import ConsoleChat
from bot.config import Settings
from bot.conversation import Change, Conversation
from bot.db import normalise_url
from bot.fetch import canonical_url
from bot.health import Health
from bot.leader import Leadership, election_engine
from bot.learn import load_current, retrain
from bot.ledger import Ledger
from bot.metrics import METRICS
from bot.models import ChatRef
from bot.outbox import Outbox, RetryPolicy
from bot.ratelimit import DatabaseLimit, RedisLimit, SharedLimit
from bot.sources import CONFIG, FeedSource, Sources
from bot.store import Store
from bot.subscriptions import Subscription, Subscriptions

log = logging.getLogger(__name__)
P = ParamSpec("P")

USER_AGENT = f"newsbot/{__version__} (+https://github.com/newsbot/newsbot)"
SAFETY_SCAN_SECONDS = 60


class InFlight:
    """The scheduled jobs running now: a shutdown cancels them quietly and waits for them.

    APScheduler's executor cancels the jobs in flight when it shuts down and logs each as
    `Job "…" raised an exception … CancelledError` at ERROR: a clean shutdown read as a
    failure. A job scheduled through `quiet` ends quietly when cancelled; any other exception
    still propagates, and the executor logs it as before.
    """

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def quiet(
        self, func: Callable[P, Awaitable[object]]
    ) -> Callable[P, Coroutine[Any, Any, object]]:
        """`func` as the scheduler runs it: tracked while it runs, quiet when cancelled."""

        @functools.wraps(func)
        async def job(*args: P.args, **kwargs: P.kwargs) -> object:
            task = asyncio.current_task()
            if task is not None:
                self.tasks.add(task)
            try:
                return await func(*args, **kwargs)
            except asyncio.CancelledError:
                return None
            finally:
                if task is not None:
                    self.tasks.discard(task)

        return job

    async def stop(self, scheduler: AsyncIOScheduler, grace: float = 5.0) -> None:
        """Shut the scheduler down, cancelling its jobs in flight; wait for them to end."""
        running = set(self.tasks)
        scheduler.shutdown(wait=False)
        if running:
            # One line for all of them: 6,000 feed polls may be in flight.
            log.info("shutdown cancelled %d scheduled jobs in flight", len(running))
            # Before the HTTP client and the store close under them.
            await asyncio.wait(running, timeout=grace)


def fetch_limits(settings: Settings) -> feeds.FetchLimits:
    """Feed fetch limits from settings."""
    s = settings.sources
    return feeds.FetchLimits(
        connect_timeout=s.connect_timeout,
        read_timeout=s.read_timeout,
        total_timeout=s.total_timeout,
        max_bytes=s.max_bytes,
        max_decompressed_bytes=s.max_decompressed_bytes,
        max_redirects=s.max_redirects,
        user_agent=USER_AGENT,
    )


class ReplyPacing:
    """Paces replies on the Outbox's per-platform timeline, so replies and alerts together
    never exceed a chat's limit (adapters call it before each reply they send)."""

    def __init__(self) -> None:
        self.outbox: Outbox | None = None

    async def __call__(self, chat: ChatRef) -> None:
        """Wait for the next send slot to `chat` and book it."""
        if self.outbox is not None:
            await self.outbox.reserve(chat)


def build_adapters(settings: Settings, pace: Pace | None = None) -> list[ChatAdapter]:
    """The chat platforms whose credentials are in the environment (any number of them)."""
    adapters: list[ChatAdapter] = []
    secrets = settings.secrets
    if secrets.telegram_bot_token is not None:
        from bot.chat.telegram import TelegramChat

        adapters.append(
            TelegramChat(
                secrets.telegram_bot_token.get_secret_value(),
                settings.telegram,
                commands=commands.infos(),
                pace=pace,
                # On a shared (PostgreSQL) database only the elected leader polls.
                poll_when_leading=shared_database(settings),
            )
        )
    if secrets.slack_bot_token is not None:
        from bot.chat.slack import SlackChat

        adapters.append(
            SlackChat(
                secrets.slack_bot_token.get_secret_value(),
                settings.slack,
                signing_secret=_reveal(secrets.slack_signing_secret),
                app_token=_reveal(secrets.slack_app_token),
                commands=commands.infos(),
                pace=pace,
            )
        )
    return adapters


def shared_database(settings: Settings) -> bool:
    """Whether several instances may share this deployment's database (PostgreSQL)."""
    return sa.make_url(normalise_url(settings.storage.url())).get_backend_name() == "postgresql"


def shared_limit(settings: Settings, engine: AsyncEngine) -> SharedLimit | None:
    """The rate limit instances share: Redis when configured, else a PostgreSQL database's."""
    if settings.redis.url:
        # Host and port only: the URL may carry a password.
        host = urlsplit(settings.redis.url).hostname or "a unix socket"
        log.info("send slots shared through Redis at %s", host)
        return RedisLimit(settings.redis.url, settings.redis.key_prefix)
    if engine.dialect.name == "postgresql":
        return DatabaseLimit(engine)
    return None  # SQLite: one instance per file, whose own pacer is the whole limit


class LeaderDuties:
    """What only the leading instance does: poll Telegram and feeds, schedule digests, send."""

    def __init__(
        self,
        adapters: Sequence[ChatAdapter],
        scheduler: AsyncIOScheduler,
        jobs: Jobs,
        outbox: Outbox,
        ledger: Ledger,
        *,
        every_instance_sends: bool = False,
    ) -> None:
        self.adapters, self.scheduler, self.jobs, self.outbox = adapters, scheduler, jobs, outbox
        self.ledger = ledger
        self.every_instance_sends = every_instance_sends

    async def apply(self, leading: bool) -> None:
        """Take the duties up or hand them over."""
        METRICS.leader.set(1 if leading else 0)
        if not self.every_instance_sends:
            if leading:
                # Only the leader sends, so rows still 'sending' were claimed by a leader that
                # died (or lost the lock, and hands back what it has not started): owed now,
                # not after their lease. At most its in-flight messages go out twice.
                released = await self.ledger.release_sending()
                if released:
                    log.info("resuming %d deliveries the previous leader left", released)
                self.outbox.sending.set()
            else:
                self.outbox.sending.clear()
        for adapter in self.adapters:
            if isinstance(adapter, Leads):
                await adapter.lead(leading)
        # A follower's index would miss what the leader routes: it rebuilds it for every pass,
        # and a new leader rebuilds it once (another instance routed meanwhile).
        self.jobs.stories.reset()
        self.jobs.stories.kept = leading
        if leading:
            self.scheduler.resume()
            # Digests a previous leader missed while it died are owed once (ledger keys).
            await self.jobs.catch_up()
        else:
            self.scheduler.pause()


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def folder_source(settings: Settings) -> folder_files.FolderSource:
    """How the article folder is read, from settings."""
    a = settings.articles
    return folder_files.FolderSource(
        a.folder,
        settings.classifier.thresholds(),
        max_bytes=a.max_file_bytes,
        languages=tuple(a.languages),
        settle=a.settle_seconds,
        model=lambda: load_current(settings.classifier.feedback_model),
    )


async def scan_folder(
    source: folder_files.FolderSource,
    sources: Sources,
    catalog: Catalog,
    subscriptions: Subscriptions,
    ledger: Ledger,
    state: folder_files.FolderState,
    index: qa.Retrieval,
    outbox: Outbox | None,
    stories: jobs.StoryIndex | None = None,
) -> float | None:
    """Scheduled and on change: read settled new or changed files; seconds until the next one."""
    report = await folder_files.scan(
        source,
        sources,
        catalog,
        subscriptions,
        ledger,
        state,
        index=index,
        outbox=outbox,
        stories=stories,
    )
    return report.wait


async def digest_job(
    catalog: Catalog,
    subscriptions: Subscriptions,
    ledger: Ledger,
    outbox: Outbox,
    settings: Settings,
    subscription_id: int,
) -> None:
    """Scheduled: owe one chat the digest of its current slot."""
    await jobs.digest_due(
        catalog,
        subscriptions,
        ledger,
        outbox,
        subscription_id,
        digest_threshold=settings.classifier.digest_threshold,
        max_items=settings.digest.max_items,
        empty_message=settings.digest.empty_message,
        now=datetime.now(UTC),
        grace=timedelta(hours=settings.digest.catch_up_hours),
    )


async def feed_job(
    client: httpx.AsyncClient,
    sources: Sources,
    catalog: Catalog,
    subscriptions: Subscriptions,
    ledger: Ledger,
    settings: Settings,
    index: qa.Retrieval,
    outbox: Outbox,
    source_id: int,
    gates: jobs.PollGates | None = None,
) -> None:
    """Scheduled: poll one feed (at most `sources.per_host` requests at once to one host)."""
    await jobs.poll_feed(
        client,
        sources,
        catalog,
        subscriptions,
        ledger,
        source_id,
        limits=fetch_limits(settings),
        allow_private=settings.sources.allow_private,
        thresholds=settings.classifier.thresholds(),
        now=datetime.now(UTC),
        model=load_current(settings.classifier.feedback_model),
        index=index,
        outbox=outbox,
        full_text=settings.sources.full_text,
        gates=gates,
    )


async def route_job(
    sources: Sources,
    catalog: Catalog,
    subscriptions: Subscriptions,
    ledger: Ledger,
    outbox: Outbox | None,
    settings: Settings,
    stories: jobs.StoryIndex | None = None,
    writes: asyncio.Lock | None = None,
) -> None:
    """At start and every minute: owe the alerts of stored articles that were never routed.

    A kill (or a failed routing pass) between storing articles and routing them leaves their
    verdicts unrouted; those of articles seen within `digest.catch_up_hours` (the window in
    which a missed digest is still sent) are routed now. Older ones are stale news.
    """
    await jobs.route_unrouted(
        sources,
        catalog,
        subscriptions,
        ledger,
        outbox,
        alert_threshold=settings.classifier.thresholds().alert,
        now=datetime.now(UTC),
        window=timedelta(hours=settings.digest.catch_up_hours),
        stories=stories,
        # One writer at a time with the feed jobs (SQLite), which route what they store.
        writes=writes,
    )


async def retrain_job(catalog: Catalog, settings: Settings) -> str:
    """Nightly: re-train the feedback model when enough new judgements arrived; say what it did."""
    path, needed = settings.classifier.feedback_model, settings.classifier.retrain_min_judgements
    if path is None or needed == 0:
        return "off"
    previous = load_current(path)
    since = datetime.fromtimestamp(path.stat().st_mtime, UTC) if previous is not None else None
    fresh = await catalog.feedback_since(since)
    if fresh < needed:
        return f"waiting: {fresh} new judgements of {needed}"
    examples = await catalog.feedback_examples()
    # Fitting is CPU work: keep the event loop free for chats meanwhile.
    outcome = await asyncio.to_thread(retrain, examples, previous)
    if not outcome.accepted or outcome.model is None:
        log.info(
            "feedback model kept: the new one scored %s < %s", outcome.new_score, outcome.old_score
        )
        return "kept the previous model"
    await asyncio.to_thread(outcome.model.install, path)
    log.info("feedback model re-trained on %d judgements", len(examples))
    return f"re-trained on {len(examples)} judgements"


async def prune_job(catalog: Catalog, ledger: Ledger, settings: Settings) -> None:
    """Scheduled: apply the retention period."""
    await jobs.prune(
        catalog,
        ledger,
        retention=timedelta(days=settings.delivery.retention_days),
        now=datetime.now(UTC),
    )


class Jobs:
    """Keeps the scheduler's per-chat digest jobs and per-feed poll jobs in step with the store."""

    def __init__(
        self,
        scheduler: AsyncIOScheduler,
        sources: Sources,
        catalog: Catalog,
        subscriptions: Subscriptions,
        ledger: Ledger,
        settings: Settings,
        client: httpx.AsyncClient,
        index: qa.Retrieval,
        outbox: Outbox,
        stories: jobs.StoryIndex | None = None,
    ) -> None:
        self.scheduler, self.settings = scheduler, settings
        self.sources, self.catalog = sources, catalog
        self.subscriptions, self.ledger = subscriptions, ledger
        self.client, self.index, self.outbox = client, index, outbox
        self.stories = stories or jobs.StoryIndex()
        # One gate for every feed job: the per-host cap holds across all feeds of one site.
        self.gates = jobs.PollGates.per_host(settings.sources.per_host, self.stories)
        self.in_flight = InFlight()

    async def sync(self) -> None:
        """Rebuild jobs from the subscriptions and sources tables (at start)."""
        wanted: set[str] = set()
        for subscription in await self.subscriptions.active():
            if self._sync_digest(subscription):
                wanted.add(f"digest-{subscription.id}")
        for source in await self.sources.active():
            self._sync_feed(source.id, source)
            wanted.add(f"feed-{source.id}")
        for job in self.scheduler.get_jobs():
            if job.id.startswith(("digest-", "feed-")) and job.id not in wanted:
                job.remove()

    async def changed(self, what: Change) -> None:
        """Re-sync only what one command changed: one chat's digest job or one feed's poll job."""
        if what.chat is not None:
            subscription = await self.subscriptions.subscription(what.chat)
            if subscription is not None:
                self._sync_digest(subscription)
        if what.source_id is not None:
            active = {source.id: source for source in await self.sources.active()}
            self._sync_feed(what.source_id, active.get(what.source_id))

    def _sync_digest(self, subscription: Subscription) -> bool:
        """Add, replace or remove one chat's digest job; True when it has one."""
        job_id = f"digest-{subscription.id}"
        trigger = schedule.trigger(subscription.prefs) if subscription.active else None
        if trigger is None:
            if self.scheduler.get_job(job_id) is not None:
                self.scheduler.remove_job(job_id)
            return False
        self.scheduler.add_job(
            self.in_flight.quiet(digest_job),
            trigger,
            args=(
                self.catalog,
                self.subscriptions,
                self.ledger,
                self.outbox,
                self.settings,
                subscription.id,
            ),
            id=job_id,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(self.settings.digest.catch_up_hours * 3600) or 1,
        )
        return True

    def _sync_feed(self, source_id: int, source: FeedSource | None) -> None:
        """Start polling an active feed (once) or stop polling a removed one."""
        job_id = f"feed-{source_id}"
        job = self.scheduler.get_job(job_id)
        if source is None:
            if job is not None:
                job.remove()
            return
        if job is None:
            self.scheduler.add_job(
                self.in_flight.quiet(feed_job),
                IntervalTrigger(seconds=source.interval_seconds, timezone=UTC),
                args=(
                    self.client,
                    self.sources,
                    self.catalog,
                    self.subscriptions,
                    self.ledger,
                    self.settings,
                    self.index,
                    self.outbox,
                    source.id,
                    self.gates,
                ),
                id=job_id,
                coalesce=True,
                max_instances=1,
                next_run_time=datetime.now(UTC),
            )

    async def catch_up(self) -> None:
        """After downtime: each chat gets the digest of its last missed slot once (within grace)."""
        for subscription in await self.subscriptions.active():
            await digest_job(
                self.catalog,
                self.subscriptions,
                self.ledger,
                self.outbox,
                self.settings,
                subscription.id,
            )


async def run(
    settings: Settings,
    *,
    lines: AsyncIterator[str] | None = None,
    out: TextIO | None = None,
    stop: asyncio.Event | None = None,
    adapters: Sequence[ChatAdapter] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    pacing: ReplyPacing | None = None,
) -> int:
    """Run the service until a signal, or the end of console input; return the exit code.

    `pacing`: the reply pacer given adapters were built with (`adapters` from the caller).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    # Started in this order and stopped in reverse by the one exit stack: store, HTTP client,
    # adapters, outbox, scheduler, watcher. The outbox never sends through an adapter that is
    # not up yet or already down.
    async with AsyncExitStack() as stack:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                stack.callback(loop.remove_signal_handler, sig)

        url = settings.storage.url()
        try:
            stack.enter_context(single_instance(url))
        except InstanceRunning as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        store = await stack.enter_async_context(Store.open(url))
        # The one place the store is taken apart: each part below gets only what it uses.
        engine, sources, catalog = store.engine, store.sources, store.catalog
        subscriptions, ledger = store.subscriptions, store.ledger
        if engine.dialect.name == "sqlite":
            # One instance per SQLite file (locked above): what it left 'sending' is due again.
            released = await ledger.release_sending()
            if released:
                log.info("resuming %d deliveries interrupted by the last shutdown", released)
        scheduler = AsyncIOScheduler(timezone=UTC)
        limiter = shared_limit(settings, engine)
        if limiter is not None:
            stack.push_async_callback(limiter.close)
        leadership: Leadership | None = None
        if engine.dialect.name == "postgresql":
            # Several instances may share this database: one is elected to lead.
            election = election_engine(normalise_url(url))
            stack.push_async_callback(election.dispose)
            leadership = Leadership(election)
        if settings.ops.http_port:
            health = operator_endpoint(settings, engine, ledger, scheduler, leadership)
            await health.start()
            stack.push_async_callback(health.stop)
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=transport
                or (None if settings.sources.allow_private else feeds.guarded_transport()),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
                follow_redirects=False,
            )
        )
        for feed in settings.sources.feeds:
            await sources.add(feed.url, name=feed.name, interval_seconds=feed.interval_seconds)
        # A feed deleted from the config file loses the file's share: it stops being polled
        # unless a chat owns it too (then it is that chat's own feed from now on).
        listed = {canonical_url(feed.url) for feed in settings.sources.feeds}
        for feed_source in await sources.active():
            if CONFIG in feed_source.owners and canonical_url(feed_source.url) not in listed:
                await sources.remove(feed_source.id, owner=CONFIG)

        console: ConsoleChat | None = None
        pacing = pacing or ReplyPacing()
        if adapters is None:
            adapters = build_adapters(settings, pacing)
        if not adapters:
            # Without chat tokens the console is the chat.
            console = ConsoleChat(lines=lines, out=out)
            adapters = [console]
        outbox = Outbox(
            ledger,
            subscriptions,
            {adapter.platform: adapter for adapter in adapters},
            retry=RetryPolicy(max_attempts=settings.delivery.max_attempts),
            limiter=limiter,
        )
        pacing.outbox = outbox

        folder = settings.articles.folder
        source = folder_source(settings)
        folder_state = folder_files.FolderState()
        # Retrieval reads the store's full-text index: nothing to rebuild at start.
        index = await asyncio.to_thread(search.StoreIndex, engine.url)
        stack.callback(index.close)
        thresholds = settings.classifier.thresholds()
        model = load_current(settings.classifier.feedback_model)
        # One story index for every routing pass of this process (folder, feeds, the sweep);
        # on a shared database it is kept only while this instance leads.
        stories = jobs.StoryIndex()
        stories.kept = leadership is None
        # What every folder scan gets: at start, on each change, and by the safety interval.
        folder_scan = (
            source,
            sources,
            catalog,
            subscriptions,
            ledger,
            folder_state,
            index,
            outbox,
            stories,
        )
        await jobs.classify_unclassified(
            sources,
            catalog,
            subscriptions,
            ledger,
            outbox,
            thresholds=thresholds,
            now=datetime.now(UTC),
            model=model,
            index=index,
            stories=stories,
        )
        problem = articles.folder_problem(folder)
        if problem is not None:
            log.warning("%s", problem)
        wait = await scan_folder(*folder_scan)
        if wait is not None:
            # A file was still being written at start: read it once it settled, before the
            # first digest.
            await asyncio.sleep(wait)
            await scan_folder(*folder_scan)
        if console is not None:
            lang = settings.chat.default_language
            await subscriptions.subscribe(CONSOLE_CHAT, lang, settings.digest.preferences())

        job_sync = Jobs(
            scheduler,
            sources,
            catalog,
            subscriptions,
            ledger,
            settings,
            client,
            index,
            outbox,
            stories,
        )
        conversation = Conversation(
            sources,
            catalog,
            subscriptions,
            ledger,
            index,
            settings,
            on_change=job_sync.changed,
            # Fetches the feed now, through the guard and every redirect, so a public address
            # that redirects inward is refused at /sources add with the reason.
            check_url=lambda url: feeds.probe(
                client,
                url,
                limits=fetch_limits(settings),
                allow_private=settings.sources.allow_private,
            ),
        )

        if console is not None:
            await console.send(
                CONSOLE_CHAT, await conversation.digest(None, settings.chat.default_language)
            )
        for adapter in adapters:
            if not await _start_unless_stopped(adapter, conversation.handle, stop):
                break
            stack.push_async_callback(adapter.stop)
        if stop.is_set():
            # Stopped while an adapter was still connecting: start nothing more (no scheduler,
            # no catch-up digests); what was started stops in reverse.
            log.info("shutting down")
            return 0

        every_instance_sends = settings.delivery.senders == "all"
        if leadership is not None and not every_instance_sends:
            outbox.sending.clear()  # until this instance is elected
        sending = asyncio.Event()
        sender = asyncio.create_task(outbox.run(sending), name="outbox")
        stack.push_async_callback(_finish, sender, sending, 5.0)

        scheduler.add_job(
            job_sync.in_flight.quiet(scan_folder),
            "interval",
            seconds=SAFETY_SCAN_SECONDS,
            args=folder_scan,
            id="scan-folder",
            coalesce=True,
            max_instances=1,
        )
        scheduler.add_job(
            job_sync.in_flight.quiet(route_job),
            "interval",
            seconds=SAFETY_SCAN_SECONDS,
            args=(
                sources,
                catalog,
                subscriptions,
                ledger,
                outbox,
                settings,
                stories,
                job_sync.gates.writes,
            ),
            id="route-unrouted",
            coalesce=True,
            max_instances=1,
            # At start (or when elected, however late) first: what a killed process stored is
            # owed at once.
            next_run_time=datetime.now(UTC),
            misfire_grace_time=None,
        )
        scheduler.add_job(
            job_sync.in_flight.quiet(prune_job),
            "interval",
            hours=24,
            args=(catalog, ledger, settings),
            id="prune",
            coalesce=True,
        )
        scheduler.add_job(
            job_sync.in_flight.quiet(retrain_job),
            CronTrigger(hour=3, timezone=UTC),
            args=(catalog, settings),
            id="retrain",
            coalesce=True,
            max_instances=1,
        )
        await job_sync.sync()
        # Shared database: followers keep their jobs paused until elected.
        scheduler.start(paused=leadership is not None)
        stack.push_async_callback(job_sync.in_flight.stop, scheduler)
        if leadership is None:
            await job_sync.catch_up()
        else:
            leadership.on_change = LeaderDuties(
                adapters,
                scheduler,
                job_sync,
                outbox,
                ledger,
                every_instance_sends=every_instance_sends,
            ).apply
            electing = asyncio.Event()
            elector = asyncio.create_task(leadership.run(electing), name="leader-election")
            stack.push_async_callback(_finish, elector, electing)

        watching = asyncio.Event()
        if settings.articles.watch and problem is None:  # else warned above, once
            watcher = asyncio.create_task(
                folder_files.watch_folder(
                    folder,
                    lambda: scan_folder(*folder_scan),
                    watching,
                ),
                name="watch-folder",
            )
            stack.push_async_callback(_finish, watcher, watching)

        finished = [asyncio.create_task(stop.wait())]
        if console is not None:
            finished.append(asyncio.create_task(console.finished.wait()))
        try:
            await asyncio.wait(finished, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in finished:
                task.cancel()
        log.info("shutting down")
    return 0


def operator_endpoint(
    settings: Settings,
    engine: AsyncEngine,
    ledger: Ledger,
    scheduler: AsyncIOScheduler,
    leadership: Leadership | None = None,
) -> Health:
    """/healthz and /metrics: ready when the database answers and the scheduler runs."""

    async def database() -> str:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return "ok"

    async def scheduling() -> str:
        if not scheduler.running:
            raise RuntimeError("scheduler not running")
        # A follower's jobs wait, paused, for it to be elected.
        return "running" if scheduler.state == STATE_RUNNING else "paused"

    async def role() -> str:
        # One instance per SQLite file (locked at start) leads; on PostgreSQL the election says.
        if leadership is None or leadership.is_leader:
            return "leader"
        return "follower"

    async def refresh() -> None:
        pending, lag = await ledger.backlog(datetime.now(UTC))
        METRICS.pending.set(pending)
        METRICS.delivery_lag.set(lag)

    if leadership is None:
        METRICS.leader.set(1)
    return Health(
        METRICS,
        {"database": database, "scheduler": scheduling, "role": role},
        host=settings.ops.http_host,
        port=settings.ops.http_port,
        refresh=refresh,
    )


class InstanceRunning(Exception):
    """Another newsbot process serves the same SQLite database."""


@contextlib.contextmanager
def single_instance(url: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite database file for as long as the service runs."""
    sa_url = sa.make_url(normalise_url(url))
    if sa_url.get_backend_name() != "sqlite" or sa_url.database in (None, "", ":memory:"):
        # PostgreSQL coordinates several instances itself (row locks when claiming).
        yield
        return
    database = Path(sa_url.database).resolve()  # only for the message: the lock is the inode's
    database.parent.mkdir(parents=True, exist_ok=True)
    # The lock is on the database file itself, not on a file named after its path: every
    # spelling (symlink, `..`, a hard link) opens the same inode and meets the same lock. An
    # empty file is what SQLite makes a new database of. flock does not touch SQLite's own
    # fcntl byte-range locks on the file.
    with database.open("ab") as handle:
        try:
            # flock is released by the kernel when the process ends, however it ends.
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstanceRunning(
                f"another newsbot is already running on {database}; "
                "stop it first, or give this one its own database"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


async def _start_unless_stopped(
    adapter: ChatAdapter, handler: Handler, stop: asyncio.Event
) -> bool:
    """Start `adapter`; a stop signal meanwhile cancels it (it may be retrying to connect)."""
    starting = asyncio.create_task(adapter.start(handler), name=f"start-{adapter.platform}")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
    if starting.cancelled():
        return False
    starting.result()  # the adapter's start error, if any
    return True


async def _finish(task: asyncio.Task[None], stop: asyncio.Event, grace: float = 2.0) -> None:
    """Ask a background task to stop, give it `grace` seconds to finish, then cancel it."""
    stop.set()
    try:
        await asyncio.wait_for(task, grace)
    except TimeoutError:
        log.warning("%s did not finish within %.0f s; cancelled", task.get_name(), grace)
    except Exception:
        log.exception("%s failed", task.get_name())
