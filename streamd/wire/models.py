"""The JSON shapes of streamd's stream API: msgspec Structs named and laid out as JetStream's wire objects.

Fields the server always prints have concrete defaults; fields it omits when empty are typed ``X | UnsetType``
and stay ``UNSET`` until set, so the encoder leaves them out just as Go's ``omitempty`` does.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from streamd.wire.gojson import I32, I64, U64, Duration, Int

API_PREFIX_TYPE = "io.nats.jetstream.api.v1."


class Retention(enum.StrEnum):
    LIMITS = "limits"
    INTEREST = "interest"
    WORKQUEUE = "workqueue"


class Discard(enum.StrEnum):
    OLD = "old"
    NEW = "new"


class Storage(enum.StrEnum):
    FILE = "file"
    MEMORY = "memory"


class Compression(enum.StrEnum):
    NONE = "none"
    S2 = "s2"

    @classmethod
    def go_null_error(cls) -> str:
        """A null compression reads as "" in Go, which it then refuses (gojson asks for this wording)."""
        return "unknown compression algorithm"


class ConsumerLimits(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    inactive_threshold: Duration = 0
    max_ack_pending: Int = 0


class SubjectTransformConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A subject transform (nats-server's SubjectTransformConfig): both fields always printed."""

    src: str | None = ""  # null reads as "" (Go), stored as ""
    dest: str | None = ""


class RePublish(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Republish after the commit (nats-server's RePublish): `src` and `headers_only` are omitempty."""

    src: str | None | UnsetType = UNSET  # null reads as "" (Go); streams/rules.py stores ">" for both
    dest: str | None = ""
    headers_only: bool | None | UnsetType = UNSET


class ExternalStream(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a mirror's or source's origin is reached: its API prefix and the prefix its deliveries come under."""

    api: str = ""
    deliver: str = ""


class StreamSource(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A mirror's or a source's origin stream (nats-server's StreamSource). `consumer` (durable sourcing) is decoded
    so that a request naming it is refused by name, never dropped."""

    name: str = ""
    opt_start_seq: U64 | UnsetType = UNSET
    opt_start_time: str | None | UnsetType = UNSET
    filter_subject: str | UnsetType = UNSET
    subject_transforms: list[SubjectTransformConfig] | None | UnsetType = UNSET
    external: ExternalStream | None | UnsetType = UNSET
    consumer: Any | UnsetType = UNSET


class StreamSourceInfo(msgspec.Struct, kw_only=True):
    """A mirror's or source's state in STREAM.INFO: `lag` messages behind, `active` ns since last heard (-1 never)."""

    name: str
    external: ExternalStream | UnsetType = UNSET
    lag: int = 0
    active: int = -1
    error: dict[str, Any] | UnsetType = UNSET
    filter_subject: str | UnsetType = UNSET
    subject_transforms: list[SubjectTransformConfig] | UnsetType = UNSET


class StreamConfig(msgspec.Struct, kw_only=True):
    """A stream's settings as stored and as echoed back; ``streams.normalize_config`` applies the defaults."""

    name: str = ""
    description: str | UnsetType = UNSET
    subjects: list[str] = msgspec.field(default_factory=list)
    retention: Retention = Retention.LIMITS
    max_consumers: Int = -1
    max_msgs: I64 = -1
    max_bytes: I64 = -1
    max_age: Duration = 0
    max_msgs_per_subject: I64 = -1
    max_msg_size: I32 = -1
    discard: Discard = Discard.OLD
    storage: Storage = Storage.FILE
    num_replicas: Int = 1
    duplicate_window: Duration = 0
    compression: Compression = Compression.NONE
    allow_direct: bool = False
    mirror_direct: bool = False
    sealed: bool = False
    deny_delete: bool = False
    deny_purge: bool = False
    allow_rollup_hdrs: bool = False
    consumer_limits: ConsumerLimits = msgspec.field(default_factory=ConsumerLimits)
    allow_msg_ttl: bool = False
    subject_delete_marker_ttl: Duration | UnsetType = UNSET
    discard_new_per_subject: bool | UnsetType = UNSET
    no_ack: bool | UnsetType = UNSET
    first_seq: U64 | UnsetType = UNSET
    metadata: dict[str, str] | UnsetType = UNSET
    subject_transform: SubjectTransformConfig | None | UnsetType = UNSET  # applied at ingest (store/routing.py)
    republish: RePublish | None | UnsetType = UNSET  # sent after the commit (store/routing.py)
    mirror: StreamSource | None | UnsetType = UNSET  # copied by server/copier.py (rules: streams/copying.py)
    sources: list[StreamSource] | None | UnsetType = UNSET
    # Features streamd does not serve: decoded so that a request turning one on is refused by name
    # (streams/rules.py), never accepted and dropped; off (false, "default", empty) they are left out, as Go does.
    placement: Any | UnsetType = UNSET
    allow_msg_counter: bool | UnsetType = UNSET
    allow_atomic: bool | UnsetType = UNSET
    allow_msg_schedules: bool | UnsetType = UNSET
    persist_mode: str | UnsetType = UNSET
    allow_batched: bool | UnsetType = UNSET


class StreamConfigRequest(StreamConfig, kw_only=True, forbid_unknown_fields=True):
    """A STREAM.CREATE/UPDATE body: the config plus the request-only `pedantic` flag. Unknown fields are refused
    as nats-server (strict by default) refuses them; the stored StreamConfig stays lenient for old records."""

    pedantic: bool = False

    def config(self) -> StreamConfig:
        return StreamConfig(**{f: getattr(self, f) for f in StreamConfig.__struct_fields__})


class StreamState(msgspec.Struct, kw_only=True):
    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    first_ts: str = "0001-01-01T00:00:00Z"
    last_seq: int = 0
    last_ts: str = "0001-01-01T00:00:00Z"
    num_subjects: int | UnsetType = UNSET
    subjects: dict[str, int] | UnsetType = UNSET
    num_deleted: int | UnsetType = UNSET
    deleted: list[int] | UnsetType = UNSET
    consumer_count: int = 0


class AnsweredStreamConfig(StreamConfig, kw_only=True):
    """A config as answered: `subjects` and `duplicate_window` left out when empty, as Go's omitempty does (only a
    mirror's or a source's can be). Built by api.streams.answered, never stored or read back."""

    subjects: list[str] | UnsetType = UNSET  # type: ignore[assignment]
    duplicate_window: Duration | UnsetType = UNSET  # type: ignore[assignment]


class StreamInfo(msgspec.Struct, kw_only=True):
    config: StreamConfig
    created: str
    state: StreamState
    mirror: StreamSourceInfo | UnsetType = UNSET
    sources: list[StreamSourceInfo] | UnsetType = UNSET
    ts: str


# ---- requests -------------------------------------------------------------------------------------------------


class StreamInfoRequest(msgspec.Struct, kw_only=True):
    subjects_filter: str = ""
    deleted_details: bool = False
    offset: Int = 0


class StreamNamesRequest(msgspec.Struct, kw_only=True):
    offset: Int = 0
    subject: str = ""


class StreamPurgeRequest(msgspec.Struct, kw_only=True):
    filter: str = ""
    seq: U64 = 0
    keep: U64 = 0


class MsgGetRequest(msgspec.Struct, kw_only=True):
    seq: U64 = 0
    last_by_subj: str = ""
    next_by_subj: str = ""
    batch: Int = 0
    max_bytes: Int = 0
    start_time: str = ""
    multi_last: list[str] | UnsetType = UNSET
    up_to_seq: U64 = 0
    up_to_time: str = ""
    no_hdr: bool = False


class MsgDeleteRequest(msgspec.Struct, kw_only=True):
    seq: U64 = 0
    no_erase: bool = False


class SnapshotRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    deliver_subject: str = ""
    no_consumers: bool = False
    chunk_size: Int = 0
    window_size: Int = 0
    jsck: bool = False


class RestoreRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    config: StreamConfigRequest = msgspec.field(default_factory=StreamConfigRequest)
    state: Any = None


class UnpinRequest(msgspec.Struct, kw_only=True):  # decoded leniently by the server (json.Unmarshal)
    group: str = ""


class ResetRequest(msgspec.Struct, kw_only=True):
    seq: U64 = 0


# ---- responses ------------------------------------------------------------------------------------------------


class AccountLimits(msgspec.Struct):
    max_memory: int = -1
    max_storage: int = -1
    max_streams: int = -1
    max_consumers: int = -1
    max_ack_pending: int = -1
    memory_max_stream_bytes: int = -1
    storage_max_stream_bytes: int = -1
    max_bytes_required: bool = False


class ApiStats(msgspec.Struct):
    level: int
    total: int
    errors: int


class Health(msgspec.Struct, kw_only=True):
    """Is streamd able to serve right now: what an operator (or a health endpoint) needs at a glance."""

    connected: bool  # the client connection to NATS (API, publishes, acks) is up
    leaf_connected: bool  # the leafnode connection (consumer deliveries) is up
    store_writable: bool  # the last LMDB commit succeeded
    last_error: str = ""  # the latest connection or store error, with its UTC time
    disconnected_seconds: float = 0.0  # how long the client connection has been down (0 when up)
    reconnects: int = 0


class StreamdStats(msgspec.Struct):
    """streamd's own counters (not in JetStream's schema; clients ignore unknown keys)."""

    ingest_dropped: int
    slow_consumer_events: int
    pending_writes: int
    health: Health | UnsetType = UNSET


class AccountInfoResponse(msgspec.Struct, kw_only=True):
    type: str = API_PREFIX_TYPE + "account_info_response"
    memory: int = 0
    storage: int = 0
    reserved_memory: int = 0
    reserved_storage: int = 0
    streams: int = 0
    consumers: int = 0
    limits: AccountLimits = msgspec.field(default_factory=AccountLimits)
    domain: str | UnsetType = UNSET
    api: ApiStats
    streamd: StreamdStats


class StreamCreateResponse(StreamInfo, kw_only=True):
    type: str = API_PREFIX_TYPE + "stream_create_response"
    did_create: bool | UnsetType = UNSET


class StreamUpdateResponse(StreamInfo, kw_only=True):
    type: str = API_PREFIX_TYPE + "stream_update_response"


class StreamInfoResponse(StreamInfo, kw_only=True):
    type: str = API_PREFIX_TYPE + "stream_info_response"
    total: int = 0
    offset: int = 0
    limit: int = 0


class SuccessResponse(msgspec.Struct, kw_only=True):
    type: str
    success: bool = True


class PurgeResponse(msgspec.Struct, kw_only=True):
    type: str = API_PREFIX_TYPE + "stream_purge_response"
    success: bool = True
    purged: int = 0


class Page(msgspec.Struct, kw_only=True):
    """The head of every paged list response; a subclass sets `type` (the field keeps its place on the wire)."""

    type: str
    total: int
    offset: int
    limit: int


class StreamNamesResponse(Page, kw_only=True):
    type: str = API_PREFIX_TYPE + "stream_names_response"
    streams: list[str] | None


class StreamListResponse(Page, kw_only=True):
    type: str = API_PREFIX_TYPE + "stream_list_response"
    streams: list[StreamInfo]
    missing: list[str] | UnsetType = UNSET


class StoredMessage(msgspec.Struct, kw_only=True):
    subject: str
    seq: int
    hdrs: bytes | UnsetType = UNSET
    data: bytes | UnsetType = UNSET
    time: str


class MsgGetResponse(msgspec.Struct, kw_only=True):
    type: str = API_PREFIX_TYPE + "stream_msg_get_response"
    message: StoredMessage


class PubAck(msgspec.Struct, kw_only=True, omit_defaults=True):
    stream: str
    seq: int
    domain: str = ""
    duplicate: bool = False


# ---- consumers ------------------------------------------------------------------------------------------------


class DeliverPolicy(enum.StrEnum):
    ALL = "all"
    LAST = "last"
    NEW = "new"
    BY_START_SEQUENCE = "by_start_sequence"
    BY_START_TIME = "by_start_time"
    LAST_PER_SUBJECT = "last_per_subject"


class AckPolicyWire(enum.StrEnum):
    NONE = "none"
    ALL = "all"
    EXPLICIT = "explicit"


class ReplayPolicy(enum.StrEnum):
    INSTANT = "instant"
    ORIGINAL = "original"


class ConsumerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A consumer's settings; omitted-when-empty fields stay UNSET, as the server's omitempty ones."""

    durable_name: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL
    opt_start_seq: U64 | UnsetType = UNSET
    opt_start_time: str | UnsetType = UNSET
    ack_policy: AckPolicyWire = AckPolicyWire.NONE  # the Go zero value: an omitted ack_policy means none
    ack_wait: Duration | UnsetType = UNSET
    max_deliver: Int = 0
    backoff: list[Duration] | UnsetType = UNSET
    filter_subject: str | UnsetType = UNSET
    filter_subjects: list[str] | UnsetType = UNSET
    replay_policy: ReplayPolicy = ReplayPolicy.INSTANT
    rate_limit_bps: U64 | UnsetType = UNSET
    sample_freq: str | UnsetType = UNSET
    max_waiting: Int | UnsetType = UNSET
    max_ack_pending: Int | UnsetType = UNSET
    flow_control: bool | UnsetType = UNSET
    idle_heartbeat: Duration | UnsetType = UNSET
    headers_only: bool | UnsetType = UNSET
    max_batch: Int | UnsetType = UNSET
    max_expires: Duration | UnsetType = UNSET
    max_bytes: Int | UnsetType = UNSET
    deliver_subject: str | UnsetType = UNSET
    deliver_group: str | UnsetType = UNSET
    inactive_threshold: Duration | UnsetType = UNSET
    num_replicas: Int = 0
    mem_storage: bool | UnsetType = UNSET
    metadata: dict[str, str] | UnsetType = UNSET
    pause_until: str | UnsetType = UNSET
    # Pull priority groups (2.11+); the policy is checked by the consumer rules (the server's error for an unknown
    # one is its own), hence Any here.
    priority_groups: list[str] | UnsetType = UNSET
    priority_policy: Any | UnsetType = UNSET
    priority_timeout: Duration | UnsetType = UNSET  # nats-server's PinnedTTL
    pinned_ttl: Any | UnsetType = UNSET  # not a server field: dropped
    direct: bool | UnsetType = UNSET
    sourcing: Any | UnsetType = UNSET


class ConsumerCreateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    stream_name: str = ""
    config: ConsumerConfig = msgspec.field(default_factory=ConsumerConfig)
    action: str = ""
    pedantic: bool = False


class PriorityGroupState(msgspec.Struct, kw_only=True):
    group: str
    pinned_client_id: str | UnsetType = UNSET
    pinned_ts: str = "0001-01-01T00:00:00Z"  # a Go time.Time: never omitted


class ConsumerUnpinResponse(msgspec.Struct, kw_only=True):
    type: str = API_PREFIX_TYPE + "consumer_unpin_response"


class SequenceInfo(msgspec.Struct, kw_only=True):
    consumer_seq: int
    stream_seq: int
    last_active: str | UnsetType = UNSET


class ConsumerInfo(msgspec.Struct, kw_only=True):
    stream_name: str
    name: str
    created: str
    config: ConsumerConfig
    delivered: SequenceInfo
    ack_floor: SequenceInfo
    num_ack_pending: int
    num_redelivered: int
    num_waiting: int
    num_pending: int
    push_bound: bool | UnsetType = UNSET
    paused: bool | UnsetType = UNSET
    pause_remaining: int | UnsetType = UNSET
    priority_groups: list[PriorityGroupState] | UnsetType = UNSET
    ts: str


class ConsumerInfoResponse(ConsumerInfo, kw_only=True):
    type: str = API_PREFIX_TYPE + "consumer_info_response"


class ConsumerCreateResponse(ConsumerInfo, kw_only=True):
    type: str = API_PREFIX_TYPE + "consumer_create_response"


class ConsumerNamesResponse(Page, kw_only=True):
    type: str = API_PREFIX_TYPE + "consumer_names_response"
    consumers: list[str]


class ConsumerListResponse(Page, kw_only=True):
    type: str = API_PREFIX_TYPE + "consumer_list_response"
    consumers: list[ConsumerInfo]


class PauseRequest(msgspec.Struct, kw_only=True):
    pause_until: str = ""


class PauseResponse(msgspec.Struct, kw_only=True):
    type: str = API_PREFIX_TYPE + "consumer_pause_response"
    paused: bool
    pause_until: str
    pause_remaining: int | UnsetType = UNSET


class PullRequest(msgspec.Struct, kw_only=True):
    batch: Int = 0
    expires: Duration = 0
    no_wait: bool = False
    max_bytes: Int = 0
    idle_heartbeat: Duration = 0
    group: str = ""
    min_pending: I64 = 0
    min_ack_pending: I64 = 0
    id: str = ""
    priority: Int = 0
