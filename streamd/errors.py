"""JetStream's error catalogue, as far as streamd answers it.

Every refusal on the wire is ``{"code", "err_code", "description"}`` taken from nats-server's ``errors.json``;
clients pick exception classes by ``code`` and match ``err_code``, so both are pinned here and checked by a test
against the catalogue. Raise ``KIND(**fields)``; the API layer turns the ``ApiError`` into the error object.

    ApiError                      one wire error (code, err_code, description)
    StoreFull(ApiError)           the disk or map could not take the write; nothing was stored
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def __call__(self, **fields: object) -> ApiError:
        return ApiError(self.code, self.err_code, self.template.format(**fields) if fields else self.template)


BAD_REQUEST = ErrorKind(400, 10003, "bad request")
INSUFFICIENT_RESOURCES = ErrorKind(503, 10023, "insufficient resources")
INVALID_JSON = ErrorKind(400, 10025, "invalid JSON: {err}")
MAX_CONSUMERS = ErrorKind(400, 10026, "maximum consumers limit reached")
NOT_EMPTY_REQUEST = ErrorKind(400, 10038, "expected an empty request payload")
NO_MESSAGE_FOUND = ErrorKind(404, 10037, "no message found")
SEQUENCE_NOT_FOUND = ErrorKind(400, 10043, "sequence {seq} not found")
STREAM_CREATE = ErrorKind(500, 10049, "{err}")
STREAM_DELETE = ErrorKind(500, 10050, "{err}")
STREAM_GENERAL = ErrorKind(500, 10051, "{err}")
STREAM_INVALID_CONFIG = ErrorKind(500, 10052, "{err}")
MESSAGE_TOO_BIG = ErrorKind(400, 10054, "message size exceeds maximum allowed")
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
REPLICAS_NEGATIVE = ErrorKind(400, 10133, "replicas count cannot be negative")
MSG_TTL_INVALID = ErrorKind(400, 10165, "invalid per-message TTL")
MSG_TTL_DISABLED = ErrorKind(400, 10166, "per-message TTL is disabled")
REQUIRED_API_LEVEL = ErrorKind(412, 10185, "JetStream minimum api level required")

ALL_KINDS: dict[str, ErrorKind] = {k: v for k, v in globals().items() if isinstance(v, ErrorKind)}
