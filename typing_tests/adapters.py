"""Type-checked from the outside: our adapters satisfy the public storage Protocols.

mypy checks this file (it is never run); an adapter drifting from a Protocol fails CI.
"""

from enspace_profile.stores.memory import MemoryStorage, MemoryTransaction
from enspace_profile.stores.sqlite import SQLiteStorage, SQLiteTransaction
from enspace_profile.typing import (
    AuditLog,
    BlobRepository,
    ProfileRepository,
    Storage,
    SupportsBlobs,
    Transaction,
)


def memory(storage: MemoryStorage, tx: MemoryTransaction) -> None:
    s: Storage = storage
    t: Transaction = tx
    b: SupportsBlobs = tx
    p: ProfileRepository = tx.profiles
    a: AuditLog = tx.audit
    r: BlobRepository = tx.blobs
    del s, t, b, p, a, r


def sqlite(storage: SQLiteStorage, tx: SQLiteTransaction) -> None:
    s: Storage = storage
    t: Transaction = tx
    b: SupportsBlobs = tx
    p: ProfileRepository = tx.profiles
    a: AuditLog = tx.audit
    r: BlobRepository = tx.blobs
    del s, t, b, p, a, r
