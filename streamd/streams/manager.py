"""The set of streams: create, update, delete, purge and info; every change goes through the writer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from msgspec import UNSET

from streamd.store import reads, retention
from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.layout import Counters, StreamRecord
from streamd.store.snapshot import Importer
from streamd.store.writer import Writer
from streamd.streams import copying
from streamd.streams import rules as config_rules
from streamd.wire import errors, subjects, timefmt
from streamd.wire.models import StreamConfig, StreamInfo, StreamState
from streamd.wire.subject_tree import SubjectTree

logger = logging.getLogger(__name__)
# Configs with more subjects than this are normalized and checked for overlap in a worker thread, so a huge
# create request never holds the event loop (the GIL is handed back to the loop every few milliseconds).
OFF_LOOP_SUBJECTS = 2000
INDEX_SLICE = 2000

SubjectsChanged = Callable[[streams.Stream, list[str], list[str]], Awaitable[None]]
Advise = Callable[[str, str], Awaitable[None]]


class StreamManager:
    def __init__(self, store: Store, registry: dict[str, streams.Stream], writer: Writer, domain: str = "") -> None:
        self.store = store
        self.streams = registry
        self.writer = writer
        self.domain = domain
        self.on_subjects: SubjectsChanged | None = None
        self.on_advisory: Advise | None = None
        self.on_deleted: Callable[[str], Awaitable[None]] | None = None
        self.consumer_count: Callable[[str], int] = lambda _name: 0
        # The `mirror` / `sources` blocks of STREAM.INFO, from the copiers (server/copier.py) once they run.
        self.copy_info: Callable[[streams.Stream], tuple[Any, Any]] | None = None
        self.dropped: list[int] = []  # deleted streams whose rows are still being collected
        # Every stream's subjects -> stream name: overlap checks and subject filters in O(subjects * depth).
        # Changed only under `_changing` (on the loop), so a worker thread may read it while a change is checked.
        self.index: SubjectTree[str] = SubjectTree()
        self._changing = asyncio.Lock()

    def recover(self) -> None:
        """Load every stream's record and counters: one read per stream, no scans of messages."""
        for rec, counters in self.store.load_streams():
            problem = stored_config_problem(rec.config)
            if problem:
                logger.error("stream '%s' is not served: its stored config is refused (%s)", rec.config.name, problem)
                continue
            dbs = self.store.open_stream_dbs(rec.id)
            self.streams[rec.config.name] = streams.Stream(
                rec.id, rec.config, rec.created_ns, counters, dbs, self.domain
            )
            self._index(rec.config.name, [], rec.config.subjects)
        self.dropped = self.store.dropped()

    def get(self, name: str) -> streams.Stream:
        stream = self.streams.get(name)
        if stream is None or stream.deleted:
            raise errors.STREAM_NOT_FOUND()
        return stream

    def _config_of(self, name: str) -> StreamConfig | None:
        stream = self.streams.get(name)
        return None if stream is None or stream.deleted else stream.config

    def names_overlapping(self, subject: str) -> set[str]:
        """Names of the streams with a subject that overlaps `subject` (STREAM.NAMES/LIST filters)."""
        return set(self.index.colliding(subject))

    def _index(self, name: str, old: list[str], new: list[str]) -> None:
        for subject in old:
            self.index.remove(subject, name)
        for subject in new:
            self.index.insert(subject, name)

    async def _reindex(self, name: str, old: list[str], new: list[str]) -> None:
        """`_index` in slices (100k subjects take ~0.5 s): other requests are answered in between."""
        for i in range(0, len(old), INDEX_SLICE):  # all removals first: a kept subject is removed, then added
            self._index(name, old[i : i + INDEX_SLICE], [])
            await asyncio.sleep(0)
        for i in range(0, len(new), INDEX_SLICE):
            self._index(name, [], new[i : i + INDEX_SLICE])
            await asyncio.sleep(0)

    def _check_overlap(self, cfg: StreamConfig) -> None:
        """No subject of `cfg` may overlap another stream's: O(len(cfg.subjects) * depth) through the index."""
        for mine in cfg.subjects:
            if self.index.collides(mine, ignore=cfg.name):
                raise errors.SUBJECT_OVERLAP()

    def _normalize_checked(self, requested: StreamConfig, old: StreamConfig | None) -> StreamConfig:
        cfg = config_rules.normalize(requested)
        if old is not None:
            config_rules.check_update(old, cfg)
        copying.check_with_streams(cfg, self._config_of)
        self._check_overlap(cfg)
        return cfg

    async def _prepare(self, requested: StreamConfig, old: StreamConfig | None = None) -> StreamConfig:
        """Normalize and check a config; a large one in a worker thread (the index is not changed meanwhile)."""
        if len(requested.subjects or ()) <= OFF_LOOP_SUBJECTS:
            return self._normalize_checked(requested, old)
        return await asyncio.to_thread(self._normalize_checked, requested, old)

    async def create(self, requested: StreamConfig) -> tuple[streams.Stream, bool]:
        async with self._changing:
            return await self._create(requested)

    async def _create(self, requested: StreamConfig) -> tuple[streams.Stream, bool]:
        cfg = await self._prepare(requested)
        existing = self.streams.get(cfg.name)
        if existing is not None:
            if msgspec.structs.asdict(existing.config) != msgspec.structs.asdict(cfg):
                raise errors.STREAM_NAME_EXISTS()
            return existing, True
        domain = self.domain

        def create(b: streams.Batch) -> streams.Stream:
            if b.txn.get(b"stream:" + cfg.name.encode(), db=b.store.meta) is not None:
                raise errors.STREAM_NAME_EXISTS()
            sid = b.store.next_stream_id(b.txn)
            counters = Counters()
            if isinstance(cfg.first_seq, int) and cfg.first_seq > 1:
                counters.first_seq, counters.last_seq = cfg.first_seq, cfg.first_seq - 1
            b.store.put_stream(b.txn, StreamRecord(sid, cfg, b.now_ns))
            b.store.put_counters(b.txn, sid, counters)
            dbs = b.store.open_stream_dbs(sid)
            return streams.Stream(sid, cfg, b.now_ns, counters, dbs, domain)

        stream = await self.writer.call(create)
        self.streams[cfg.name] = stream
        await self._reindex(cfg.name, [], cfg.subjects)
        logger.info("stream '%s' created, subjects %s", cfg.name, _some(cfg.subjects))
        if self.on_subjects:
            await self.on_subjects(stream, [], list(cfg.subjects))
        await self._advise(cfg.name, "create")
        return stream, True

    async def add_restored(
        self,
        importer: Importer,
        cfg: StreamConfig,
        created_ns: int,
        consumers: list[tuple[str, bytes, bytes]],
        on_created: Callable[[streams.Stream], None] | None = None,
    ) -> streams.Stream:
        """Make an imported stream exist (its messages already written under the importer's hidden id): name and
        subjects are checked again under the change lock, then one transaction writes its records. `on_created`
        runs before the stream's subjects are served (its consumers must see the first new message)."""
        async with self._changing:
            if cfg.name in self.streams:
                raise errors.STREAM_NAME_EXISTS_RESTORE()
            self._check_overlap(cfg)
            domain = self.domain

            def finish(b: streams.Batch) -> streams.Stream:
                importer.finish(b, cfg, created_ns, consumers)
                dbs = b.store.open_stream_dbs(importer.stream_id)
                return streams.Stream(importer.stream_id, cfg, created_ns, importer.counters, dbs, domain)

            stream = await self.writer.call(finish)
            self.streams[cfg.name] = stream
            if on_created is not None:
                on_created(stream)
            await self._reindex(cfg.name, [], cfg.subjects)
        logger.info(
            "stream '%s' restored: %d messages, last seq %d",
            cfg.name,
            stream.counters.messages,
            stream.counters.last_seq,
        )
        if self.on_subjects:
            await self.on_subjects(stream, [], list(cfg.subjects))
        await self._advise(cfg.name, "create")
        return stream

    def check_overlap(self, cfg: StreamConfig) -> None:
        self._check_overlap(cfg)

    async def update(self, requested: StreamConfig) -> streams.Stream:
        async with self._changing:
            return await self._update(requested)

    async def _update(self, requested: StreamConfig) -> streams.Stream:
        stream = self.get(requested.name)
        cfg = await self._prepare(requested, stream.config)
        old_subjects = list(stream.config.subjects)

        def update(b: streams.Batch) -> None:
            b.store.put_stream(b.txn, StreamRecord(stream.id, cfg, stream.created_ns))
            previous, stream.config = stream.config, cfg
            try:
                b.touch(stream)
                retention.trim_to_limits(b, stream)
            except BaseException:  # the transaction is abandoned: memory must keep matching the disk
                stream.config = previous
                raise

        await self.writer.call(update)
        await self._reindex(cfg.name, old_subjects, cfg.subjects)
        logger.info("stream '%s' updated", cfg.name)
        if self.on_subjects:  # subjects or allow_direct may have changed
            await self.on_subjects(stream, old_subjects, list(cfg.subjects))
        await self._advise(cfg.name, "modify")
        return stream

    async def delete(self, name: str) -> None:
        async with self._changing:
            stream = self.get(name)

            def delete(b: streams.Batch) -> bool:
                b.store.drop_stream(b.txn, stream.name, stream.id)
                stream.deleted = True
                return b.store.collect(b.txn, stream.id)

            if not await self.writer.call(delete):
                self.dropped.append(stream.id)  # the retention loop collects the rest, a chunk at a time
            self.streams.pop(name, None)
            await self._reindex(name, stream.config.subjects, [])
        logger.info("stream '%s' deleted", name)
        if self.on_deleted:
            await self.on_deleted(name)
        if self.on_subjects:
            await self.on_subjects(stream, list(stream.config.subjects), [])
        await self._advise(name, "delete")

    async def purge(self, name: str, filter_subject: str, seq: int, keep: int) -> int:
        stream = self.get(name)
        if stream.config.sealed:
            raise errors.SEALED()
        if stream.config.deny_purge:
            raise errors.PURGE_FAILED(err="stream purge not permitted")
        if seq and keep:
            raise errors.BAD_REQUEST()
        if filter_subject and not subjects.is_valid_subject(filter_subject):
            return 0  # as the server: an invalid filter matches nothing (token matching would match too much)
        return await self.writer.call(
            lambda b: streams.purge(b, stream, filter_subject=filter_subject, seq=seq, keep=keep)
        )

    async def delete_message(self, name: str, seq: int) -> None:
        stream = self.get(name)
        if stream.config.sealed:
            raise errors.SEALED()
        if stream.config.deny_delete:
            raise errors.MSG_DELETE_FAILED(err="message delete not permitted")

        def delete(b: streams.Batch) -> None:
            if seq > stream.counters.last_seq:
                raise errors.MSG_DELETE_FAILED(err="stream store EOF")
            if not streams.delete_seq(b, stream, seq):
                raise errors.SEQUENCE_NOT_FOUND(seq=seq)

        await self.writer.call(delete)

    async def collect_dropped(self) -> bool:
        """Remove one chunk of a deleted stream's rows; True when there was work (so look again soon)."""
        if not self.dropped:
            return False
        sid = self.dropped[0]
        if await self.writer.call(lambda b: b.store.collect(b.txn, sid)):
            self.dropped.remove(sid)
        return True

    async def expire_due(self, now_ns: int) -> int:
        """Run retention for streams whose next deadline has passed; -> the next deadline (ns) or 0."""
        if await self.collect_dropped():
            await self._expire(now_ns)
            return now_ns  # more rows to collect: come back at once
        return await self._expire(now_ns)

    async def _expire(self, now_ns: int) -> int:
        due: list[streams.Stream] = []
        upcoming = 0
        with self.store.read() as txn:
            found = retention.deadlines(txn, self.store.tables, list(self.streams.values()))
        for stream, deadline in found:
            if deadline <= now_ns:
                due.append(stream)
            else:
                upcoming = deadline if not upcoming else min(upcoming, deadline)
        if due:

            def expire(b: streams.Batch) -> None:
                for stream in due:
                    retention.expire(b, stream)

            await self.writer.call(expire)
            return now_ns  # look again at once: the expiry itself moved the deadlines
        return upcoming

    def info(self, stream: streams.Stream, subjects_filter: str = "", deleted_details: bool = False) -> StreamInfo:
        c = stream.committed
        state = StreamState(
            messages=c.messages,
            bytes=c.total_bytes,
            first_seq=c.first_seq if c.last_seq or c.messages else 0,
            first_ts=timefmt.format_ns(c.first_ns),
            last_seq=c.last_seq,
            last_ts=timefmt.format_ns(c.last_ns),
            consumer_count=self.consumer_count(stream.name),
        )
        if c.num_subjects:
            state.num_subjects = c.num_subjects
        num_deleted = stream.num_deleted()
        if num_deleted:
            state.num_deleted = num_deleted
        if subjects_filter or deleted_details:
            with self.store.read() as txn:
                if subjects_filter and subjects.is_valid_subject(subjects_filter):  # an invalid one matches nothing
                    state.subjects = reads.subject_counts(txn, stream, subjects_filter) or UNSET
                if deleted_details and num_deleted:
                    state.deleted = reads.deleted_seqs(txn, stream)
        info = StreamInfo(
            config=stream.config,
            created=timefmt.format_ns(stream.created_ns),
            state=state,
            ts=timefmt.format_ns(timefmt.now_ns()),
        )
        if self.copy_info is not None and (stream.config.mirror or stream.config.sources):
            info.mirror, info.sources = self.copy_info(stream)
        return info

    async def _advise(self, name: str, action: str) -> None:
        if self.on_advisory:
            await self.on_advisory(name, action)


def stored_config_problem(cfg: StreamConfig) -> str:
    """Why the current rules refuse a config stored by an older streamd ("" when they take it): such a stream is
    left alone on disk (its name stays taken) rather than served on subjects that might not work."""
    try:
        config_rules.normalize(cfg)
    except errors.ApiError as exc:
        return exc.description
    except Exception as exc:  # a config that breaks the rules themselves
        return repr(exc)
    return ""


def _some(items: list[str], limit: int = 10) -> str:
    """A log line names a few subjects, never a megabyte of them."""
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ",".join(items[:limit]) + more
