"""JetStream's error catalogue, as far as streamd answers it.

Every refusal on the wire is ``{"code", "err_code", "description"}`` taken from nats-server's ``errors.json``;
clients pick exception classes by ``code`` and match ``err_code``, so both are pinned here and checked by a test
against the catalogue. Raise ``KIND(**fields)``; the API layer turns the ``ApiError`` into the error object.

    ApiError                      one wire error (code, err_code, description)
    StoreFull(ApiError)           INSUFFICIENT_RESOURCES: the disk or the writer's queue could not take the
                                  write; nothing was stored
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ApiError(Exception):
    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.err_code = err_code
        self.description = description

    def as_dict(self) -> dict[str, int | str]:
        return {"code": self.code, "err_code": self.err_code, "description": self.description}


class StoreFull(ApiError):
    pass


@dataclass(frozen=True, slots=True)
class ErrorKind:
    code: int
    err_code: int
    template: str
    # The exception raised: a subclass where a caller must tell this refusal from others (StoreFull).
    exc: type[ApiError] = field(default=ApiError, compare=False)

    def __call__(self, **fields: object) -> ApiError:
        return self.exc(self.code, self.err_code, self.template.format(**fields) if fields else self.template)


BAD_REQUEST = ErrorKind(400, 10003, "bad request")
CLUSTER_REQUIRED = ErrorKind(503, 10010, "JetStream clustering support required")
SNAPSHOT_DELIVER_SUBJECT_INVALID = ErrorKind(400, 10015, "deliver subject not valid")
INSUFFICIENT_RESOURCES = ErrorKind(503, 10023, "insufficient resources", StoreFull)
INVALID_JSON = ErrorKind(400, 10025, "invalid JSON: {err}")
MAX_CONSUMERS = ErrorKind(400, 10026, "maximum consumers limit reached")
MAX_STREAMS = ErrorKind(400, 10027, "maximum number of streams reached")
NOT_EMPTY_REQUEST = ErrorKind(400, 10038, "expected an empty request payload")
NO_MESSAGE_FOUND = ErrorKind(404, 10037, "no message found")
SEQUENCE_NOT_FOUND = ErrorKind(400, 10043, "sequence {seq} not found")
STREAM_CREATE = ErrorKind(500, 10049, "{err}")
STREAM_DELETE = ErrorKind(500, 10050, "{err}")
STREAM_GENERAL = ErrorKind(500, 10051, "{err}")
STREAM_INVALID_CONFIG = ErrorKind(500, 10052, "{err}")
MESSAGE_TOO_BIG = ErrorKind(400, 10054, "message size exceeds maximum allowed")
STREAM_RESTORE = ErrorKind(500, 10062, "restore failed: {err}")
STREAM_SNAPSHOT = ErrorKind(500, 10064, "snapshot failed: {err}")
STREAM_NAME_MISMATCH = ErrorKind(400, 10056, "stream name in subject does not match request")
MSG_DELETE_FAILED = ErrorKind(500, 10057, "{err}")
STREAM_NAME_EXISTS = ErrorKind(400, 10058, "stream name already in use with a different configuration")
STREAM_NOT_FOUND = ErrorKind(404, 10059, "stream not found")
EXPECTED_STREAM = ErrorKind(400, 10060, "expected stream does not match")
SUBJECT_OVERLAP = ErrorKind(400, 10065, "subjects overlap with an existing stream")
WRONG_LAST_MSG_ID = ErrorKind(400, 10070, "wrong last msg ID: {id}")
WRONG_LAST_SEQUENCE = ErrorKind(400, 10071, "wrong last sequence: {seq}")
REPLICAS_NOT_SUPPORTED = ErrorKind(500, 10074, "replicas > 1 not supported in non-clustered mode")
STORE_FAILED = ErrorKind(503, 10077, "{err}")
HEADER_TOO_BIG = ErrorKind(400, 10097, "header size exceeds maximum allowed of 64k")
SEALED = ErrorKind(400, 10109, "invalid operation on sealed stream")
PURGE_FAILED = ErrorKind(500, 10110, "{err}")
ROLLUP_FAILED = ErrorKind(500, 10111, "{err}")
STREAM_NAME_PATH_SEPARATORS = ErrorKind(400, 10128, "Stream name can not contain path separators")
STREAM_NAME_EXISTS_RESTORE = ErrorKind(400, 10130, "stream name already in use, cannot restore")
REPLICAS_NEGATIVE = ErrorKind(400, 10133, "replicas count cannot be negative")
STREAM_TRANSFORM_INVALID_SOURCE = ErrorKind(400, 10155, "stream transform source: {err}")
STREAM_TRANSFORM_INVALID_DESTINATION = ErrorKind(400, 10156, "stream transform: {err}")
MSG_TTL_INVALID = ErrorKind(400, 10165, "invalid per-message TTL")
MSG_TTL_DISABLED = ErrorKind(400, 10166, "per-message TTL is disabled")
REQUIRED_API_LEVEL = ErrorKind(412, 10185, "JetStream minimum api level required")

# ---- mirrors and sources ----
EXTERNAL_API_OVERLAP = ErrorKind(400, 10021, "stream external api prefix {prefix} must not overlap with {subject}")
EXTERNAL_DELIVER_PREFIX_OVERLAPS = ErrorKind(
    400, 10022, "stream external delivery prefix {prefix} overlaps with stream subject {subject}"
)
EXTERNAL_DELIVER_SUBJECT_INVALID = ErrorKind(
    400, 10024, "stream external delivery prefix {prefix} must not contain wildcards"
)
MIRROR_CONSUMER_SETUP_FAILED = ErrorKind(500, 10029, "{err}")
MIRROR_MAX_MSG_SIZE = ErrorKind(400, 10030, "stream mirror must have max message size >= source")
MIRROR_WITH_SOURCES = ErrorKind(400, 10031, "stream mirrors can not also contain other sources")
MIRROR_WITH_SUBJECTS = ErrorKind(400, 10034, "stream mirrors can not contain subjects")
SOURCE_CONSUMER_SETUP_FAILED = ErrorKind(500, 10045, "{err}")
SOURCE_MAX_MSG_SIZE = ErrorKind(400, 10046, "stream source must have max message size >= target")
MIRROR_NOT_UPDATABLE = ErrorKind(400, 10055, "stream mirror configuration can not be updated")
SOURCE_DUPLICATE = ErrorKind(400, 10140, "duplicate source configuration detected")
SOURCE_INVALID_NAME = ErrorKind(400, 10141, "sourced stream name is invalid")
MIRROR_INVALID_NAME = ErrorKind(400, 10142, "mirrored stream name is invalid")
MIRROR_WITH_FIRST_SEQ = ErrorKind(400, 10143, "stream mirrors can not have first sequence configured")
SOURCE_MULTIPLE_FILTERS = ErrorKind(
    400, 10144, "source with multiple subject transforms cannot also have a single subject filter"
)
MIRROR_MULTIPLE_FILTERS = ErrorKind(
    400, 10150, "mirror with multiple subject transforms cannot also have a single subject filter"
)
SOURCE_INVALID_SUBJECT_FILTER = ErrorKind(400, 10145, "source transform source: {err}")
SOURCE_INVALID_TRANSFORM_DESTINATION = ErrorKind(400, 10146, "source transform: {err}")
SOURCE_OVERLAPPING_SUBJECT_FILTERS = ErrorKind(400, 10147, "source filters can not overlap")
MIRROR_INVALID_SUBJECT_FILTER = ErrorKind(400, 10151, "mirror transform source: {err}")
MIRROR_OVERLAPPING_SUBJECT_FILTERS = ErrorKind(400, 10152, "mirror subject filters can not overlap")
MIRROR_INVALID_TRANSFORM_DESTINATION = ErrorKind(400, 10154, "mirror transform: {err}")
MIRROR_WITH_COUNTERS = ErrorKind(400, 10173, "stream mirrors can not also calculate counters")
MIRROR_WITH_SCHEDULES = ErrorKind(400, 10186, "stream mirrors can not also schedule messages")
SOURCE_WITH_SCHEDULES = ErrorKind(400, 10187, "stream source can not also schedule messages")
SCHEDULES_DISABLED = ErrorKind(400, 10188, "message schedules is disabled")
SCHEDULES_PATTERN_INVALID = ErrorKind(400, 10189, "message schedules pattern is invalid")
SCHEDULES_TARGET_INVALID = ErrorKind(400, 10190, "message schedules target is invalid")
SCHEDULES_TTL_INVALID = ErrorKind(400, 10191, "message schedules invalid per-message TTL")
SCHEDULES_ROLLUP_INVALID = ErrorKind(400, 10192, "message schedules invalid rollup")
SCHEDULES_SOURCE_INVALID = ErrorKind(400, 10203, "message schedules source is invalid")
SCHEDULES_SCHEDULER_INVALID = ErrorKind(400, 10212, "message schedules invalid scheduler")
SCHEDULES_TZ_INVALID = ErrorKind(400, 10223, "message schedules time zone is invalid")
MIRROR_WITH_ATOMIC = ErrorKind(400, 10198, "stream mirrors can not also use atomic publishing")
MIRROR_WITH_BATCH = ErrorKind(400, 10209, "stream mirrors can not also use batch publishing")

# ---- atomic batch publish and counters ----
INCR_DISABLED = ErrorKind(400, 10168, "message counters is disabled")
INCR_MISSING = ErrorKind(400, 10169, "message counter increment is missing")
INCR_PAYLOAD = ErrorKind(400, 10170, "message counter has payload")
INCR_INVALID = ErrorKind(400, 10171, "message counter increment is invalid")
COUNTER_BROKEN = ErrorKind(400, 10172, "message counter is broken")
WRONG_LAST_SEQUENCE_CONSTANT = ErrorKind(400, 10164, "wrong last sequence")
ATOMIC_DISABLED = ErrorKind(400, 10174, "atomic publish is disabled")
ATOMIC_MISSING_SEQ = ErrorKind(400, 10175, "atomic publish sequence is missing")
ATOMIC_INCOMPLETE = ErrorKind(400, 10176, "atomic publish batch is incomplete")
ATOMIC_UNSUPPORTED_HEADER = ErrorKind(400, 10177, "atomic publish unsupported header used: {header}")
ATOMIC_INVALID_ID = ErrorKind(400, 10179, "atomic publish batch ID is invalid")
ATOMIC_TOO_LARGE = ErrorKind(400, 10199, "atomic publish batch is too large: {size}")
ATOMIC_INVALID_COMMIT = ErrorKind(400, 10200, "atomic publish batch commit is invalid")
ATOMIC_DUPLICATE = ErrorKind(400, 10201, "atomic publish batch contains duplicate message id")
ATOMIC_TOO_MANY_INFLIGHT = ErrorKind(429, 10210, "atomic publish too many inflight")

# ---- consumers ----
CONSUMER_CREATE = ErrorKind(500, 10012, "{err}")
CONSUMER_NAME_EXISTS = ErrorKind(400, 10013, "consumer name already in use")
CONSUMER_NOT_FOUND = ErrorKind(404, 10014, "consumer not found")
DURABLE_NAME_MISMATCH = ErrorKind(400, 10017, "consumer name in subject does not match durable name in request")
DURABLE_NAME_NOT_SET = ErrorKind(400, 10018, "consumer expected to be durable but a durable name was not set")
EPHEMERAL_WITH_DURABLE = ErrorKind(
    400, 10020, "consumer expected to be ephemeral but a durable name was set in request"
)
DELIVER_WILDCARDS = ErrorKind(400, 10079, "consumer deliver subject has wildcards")
PUSH_MAX_WAITING = ErrorKind(400, 10080, "consumer in push mode can not set max waiting")
DELIVER_CYCLE = ErrorKind(400, 10081, "consumer deliver subject forms a cycle")
MAX_PENDING_NEEDS_ACK = ErrorKind(400, 10082, "consumer requires ack policy for max ack pending")
SMALL_HEARTBEAT = ErrorKind(400, 10083, "consumer idle heartbeat needs to be >= 100ms")
PULL_REQUIRES_ACK = ErrorKind(400, 10084, "consumer in pull mode requires explicit ack policy on workqueue stream")
PULL_WITH_RATE_LIMIT = ErrorKind(400, 10086, "consumer in pull mode can not have rate limit set")
MAX_WAITING_NEGATIVE = ErrorKind(400, 10087, "consumer max waiting needs to be positive")
HB_REQUIRES_PUSH = ErrorKind(400, 10088, "consumer idle heartbeat requires a push based consumer")
FC_REQUIRES_PUSH = ErrorKind(400, 10089, "consumer flow control requires a push based consumer")
DIRECT_REQUIRES_PUSH = ErrorKind(400, 10090, "consumer direct requires a push based consumer")
DIRECT_REQUIRES_EPHEMERAL = ErrorKind(400, 10091, "consumer direct requires an ephemeral consumer")
CONSUMER_INVALID_POLICY = ErrorKind(400, 10094, "{err}")
WQ_REQUIRES_EXPLICIT_ACK = ErrorKind(400, 10098, "workqueue stream requires explicit ack")
WQ_MULTIPLE_UNFILTERED = ErrorKind(400, 10099, "multiple non-filtered consumers not allowed on workqueue stream")
WQ_NOT_UNIQUE = ErrorKind(400, 10100, "filtered consumer not unique on workqueue stream")
WQ_NOT_DELIVER_ALL = ErrorKind(400, 10101, "consumer must be deliver all on workqueue stream")
CONSUMER_NAME_TOO_LONG = ErrorKind(400, 10102, "consumer name is too long, maximum allowed is {max}")
BAD_DURABLE_NAME = ErrorKind(400, 10103, "durable name can not contain '.', '*', '>'")
CONSUMER_DESCRIPTION_TOO_LONG = ErrorKind(400, 10107, "consumer description is too long, maximum allowed is {max}")
FC_NEEDS_HEARTBEATS = ErrorKind(400, 10108, "consumer with flow control also needs heartbeats")
INVALID_DELIVER_SUBJECT = ErrorKind(400, 10112, "invalid push consumer deliver subject")
MAX_BATCH_NEGATIVE = ErrorKind(400, 10114, "consumer max request batch needs to be > 0")
MAX_EXPIRES_TOO_SMALL = ErrorKind(400, 10115, "consumer max request expires needs to be >= 1ms")
MAX_DELIVER_BACKOFF = ErrorKind(400, 10116, "max deliver is required to be > length of backoff values")
REPLICAS_EXCEED_STREAM = ErrorKind(400, 10126, "consumer config replica count exceeds parent stream")
CONSUMER_NAME_PATH_SEPARATORS = ErrorKind(400, 10127, "Consumer name can not contain path separators")
FILTER_MISMATCH = ErrorKind(400, 10131, "Consumer create request did not match filtered subject from create subject")
DURABLE_AND_NAME_MISMATCH = ErrorKind(400, 10132, "Consumer Durable and Name have to be equal if both are provided")
DUPLICATE_FILTERS = ErrorKind(400, 10136, "consumer cannot have both FilterSubject and FilterSubjects specified")
MULTIPLE_FILTERS_NOT_ALLOWED = ErrorKind(
    400, 10137, "consumer with multiple subject filters cannot use subject based API"
)
OVERLAPPING_FILTERS = ErrorKind(400, 10138, "consumer subject filters cannot overlap")
EMPTY_FILTER = ErrorKind(400, 10139, "consumer filter in FilterSubjects cannot be empty")
CONSUMER_EXISTS = ErrorKind(400, 10148, "consumer already exists")
CONSUMER_DOES_NOT_EXIST = ErrorKind(400, 10149, "consumer does not exist")
PRIORITY_POLICY_WITHOUT_GROUP = ErrorKind(
    400, 10159, "Setting PriorityPolicy requires at least one PriorityGroup to be set"
)
EMPTY_GROUP_NAME = ErrorKind(400, 10161, "Group name cannot be an empty string")
PUSH_WITH_PRIORITY_GROUP = ErrorKind(400, 10178, "priority groups can not be used with push consumers")
PRIORITY_GROUP_WITH_POLICY_NONE = ErrorKind(400, 10196, "consumer can not have priority groups when policy is none")
PINNED_TTL_WITHOUT_POLICY = ErrorKind(400, 10197, "PinnedTTL cannot be set when PriorityPolicy is none")
INVALID_PRIORITY_GROUP = ErrorKind(400, 10160, "Provided priority group does not exist for this consumer")
INVALID_GROUP_NAME = ErrorKind(
    400,
    10162,
    "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters",
)
ACK_WAIT_NEGATIVE = ErrorKind(400, 10183, "consumer ack wait needs to be positive")
BACKOFF_NEGATIVE = ErrorKind(400, 10184, "consumer backoff needs to be positive")
INVALID_RESET = ErrorKind(400, 10204, "invalid reset: {err}")

ALL_KINDS: dict[str, ErrorKind] = {k: v for k, v in globals().items() if isinstance(v, ErrorKind)}
