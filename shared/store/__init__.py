"""The SQLite event store shared by sender and listener: the only package with SQL.

Why a store at all: the sender and the listener are separate processes that
restart independently, and every event must be classified exactly once. So the
send record, the receipt and the final judgement live in one file, and every
change to an event is one short `BEGIN IMMEDIATE` transaction (docs/runtime.md
says why IMMEDIATE, WAL and autocommit).

One module per job: records (states, errors, rows), schema (version, migrations),
files (whose files these are), connection (opening, pragmas, transactions), sending,
subscriptions, receipts, judging, failures, notes, queries (status), maintenance
(checkpoints, pruning); store puts the jobs together in one Store, reader is the
pages' read-only one. Import from here: the names below are the package's surface.
"""

from shared.store.connection import JOURNAL_SIZE_LIMIT, boot_id
from shared.store.failures import FAILURE_DETAIL_MAX, FAILURES_KEPT
from shared.store.files import (
    COMPANION_SUFFIXES,
    check_store_path,
    directory_problem,
    file_problem,
    make_store_dir,
    open_companion,
)
from shared.store.maintenance import WAL_RESTART_BYTES
from shared.store.notes import Note, NoteOwner, note_key
from shared.store.reader import StoreReader
from shared.store.receipts import SENT_AT_TOLERANCE
from shared.store.records import (
    Arrival,
    ArrivalResult,
    EventRow,
    EventState,
    FailureKind,
    FailureRow,
    PostState,
    StoreError,
    StoreOperation,
    StoreWriteFailed,
)
from shared.store.schema import OUR_TABLES, SCHEMA_VERSION, event_key_hex
from shared.store.store import Store

__all__ = [
    "COMPANION_SUFFIXES",
    "FAILURES_KEPT",
    "FAILURE_DETAIL_MAX",
    "JOURNAL_SIZE_LIMIT",
    "OUR_TABLES",
    "SCHEMA_VERSION",
    "SENT_AT_TOLERANCE",
    "WAL_RESTART_BYTES",
    "Arrival",
    "ArrivalResult",
    "EventRow",
    "EventState",
    "FailureKind",
    "FailureRow",
    "Note",
    "NoteOwner",
    "PostState",
    "Store",
    "StoreError",
    "StoreOperation",
    "StoreReader",
    "StoreWriteFailed",
    "boot_id",
    "check_store_path",
    "directory_problem",
    "event_key_hex",
    "file_problem",
    "make_store_dir",
    "note_key",
    "open_companion",
]
