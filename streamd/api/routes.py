"""The one `$JS.API` route table: verb -> response kind, handler, asset-name count, extra keys of an error answer.

Built once at import from the handler modules; nothing adds to it later. `CONSUMER.MSG.NEXT` is absent on purpose:
the service serves pull requests on a raw subscription of their own (server/api_intake.py), so no request for
it ever reaches the dispatcher.
"""

from __future__ import annotations

from streamd.api import consumers, messages, snapshot, streams, unserved
from streamd.api.account import account_info
from streamd.api.context import PAGED, Route
from streamd.wire import timefmt

ROUTES: dict[str, Route] = {
    "INFO": Route("account_info_response", account_info, 0),
    "STREAM.CREATE": Route("stream_create_response", streams.stream_create, 1),
    "STREAM.UPDATE": Route("stream_update_response", streams.stream_update, 1),
    "STREAM.DELETE": Route("stream_delete_response", streams.stream_delete, 1),
    "STREAM.INFO": Route("stream_info_response", streams.stream_info, 1, PAGED),
    "STREAM.NAMES": Route("stream_names_response", streams.stream_names, 0, {**PAGED, "streams": None}),
    "STREAM.LIST": Route("stream_list_response", streams.stream_list, 0, {**PAGED, "streams": []}),
    "STREAM.PURGE": Route("stream_purge_response", streams.stream_purge, 1, {"success": False, "purged": 0}),
    "STREAM.MSG.GET": Route("stream_msg_get_response", messages.stream_msg_get, 1),
    "STREAM.MSG.DELETE": Route("stream_msg_delete_response", messages.stream_msg_delete, 1, {"success": False}),
    "CONSUMER.CREATE": Route("consumer_create_response", consumers.consumer_create, -1),
    "CONSUMER.DURABLE.CREATE": Route("consumer_create_response", consumers.consumer_durable_create, 2),
    "CONSUMER.INFO": Route("consumer_info_response", consumers.consumer_info, 2),
    "CONSUMER.DELETE": Route("consumer_delete_response", consumers.consumer_delete, 2),
    "CONSUMER.NAMES": Route("consumer_names_response", consumers.consumer_names, 1, {**PAGED, "consumers": []}),
    "CONSUMER.LIST": Route("consumer_list_response", consumers.consumer_list, 1, {**PAGED, "consumers": []}),
    "CONSUMER.PAUSE": Route(
        "consumer_pause_response",
        consumers.consumer_pause,
        2,
        {"paused": False, "pause_until": timefmt.ZERO_TIME},
    ),
    "STREAM.SNAPSHOT": Route("stream_snapshot_response", snapshot.stream_snapshot, 1),
    "STREAM.RESTORE": Route("stream_restore_response", snapshot.stream_restore, 1, {"deliver_subject": ""}),
    # Answered, not served (unserved.py): the error a single nats-server gives, never a timeout.
    "CONSUMER.UNPIN": Route("consumer_unpin_response", consumers.consumer_unpin, 2),
    "CONSUMER.RESET": Route("consumer_reset_response", unserved.consumer_reset, 2, {"reset_seq": 0}),
    **{
        verb: Route(kind, unserved.cluster_only, tokens, level_first=False)
        for verb, kind, tokens in (
            ("STREAM.LEADER.STEPDOWN", "stream_leader_stepdown_response", 1),
            ("CONSUMER.LEADER.STEPDOWN", "consumer_leader_stepdown_response", 2),
            ("STREAM.PEER.REMOVE", "stream_remove_peer_response", 1),
            ("STREAM.PEER.EVACUATE", "stream_evacuate_peer_response", 1),
            ("STREAM.CANCEL_MOVE", "stream_cancel_move_response", 1),
        )
    },
}
