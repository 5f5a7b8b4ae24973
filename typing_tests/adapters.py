"""Type-checked from the outside: our adapters satisfy the public storage Protocols.

mypy checks this file (it is never run); an adapter drifting from a Protocol fails CI.
"""

from enspace_profile.stores.memory import MemoryStorage, MemoryTransaction
from enspace_profile.stores.postgres import PostgresStorage, PostgresTransaction
from enspace_profile.stores.sqlite import SQLiteStorage, SQLiteTransaction
from enspace_profile.typing import (
    AuditLog,
    BlobRepository,
    CredentialRepository,
    IntegrationRepository,
    LabRepository,
    ProfileRepository,
    SessionRepository,
    Storage,
    SupportsBlobs,
    SupportsCredentials,
    SupportsIntegrations,
    SupportsLab,
    SupportsSessions,
    SupportsThrottle,
    SupportsTokenLookup,
    SupportsTokens,
    ThrottleRepository,
    TokenRepository,
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


def memory_security(tx: MemoryTransaction) -> None:
    c: SupportsCredentials = tx
    t: SupportsThrottle = tx
    s: SupportsSessions = tx
    cr: CredentialRepository = tx.credentials
    tr: ThrottleRepository = tx.throttle
    sr: SessionRepository = tx.sessions
    del c, t, s, cr, tr, sr


def sqlite_security(tx: SQLiteTransaction) -> None:
    c: SupportsCredentials = tx
    t: SupportsThrottle = tx
    s: SupportsSessions = tx
    cr: CredentialRepository = tx.credentials
    tr: ThrottleRepository = tx.throttle
    sr: SessionRepository = tx.sessions
    del c, t, s, cr, tr, sr


def memory_lab(tx: MemoryTransaction) -> None:
    s: SupportsLab = tx
    r: LabRepository = tx.lab
    del s, r


def sqlite_lab(tx: SQLiteTransaction) -> None:
    s: SupportsLab = tx
    r: LabRepository = tx.lab
    del s, r


def memory_integrations(tx: MemoryTransaction) -> None:
    s: SupportsIntegrations = tx
    r: IntegrationRepository = tx.integrations
    del s, r


def sqlite_integrations(tx: SQLiteTransaction) -> None:
    s: SupportsIntegrations = tx
    r: IntegrationRepository = tx.integrations
    del s, r


def memory_tokens(storage: MemoryStorage, tx: MemoryTransaction) -> None:
    s: SupportsTokens = tx
    r: TokenRepository = tx.tokens
    lookup: SupportsTokenLookup = storage
    del s, r, lookup


def sqlite_tokens(storage: SQLiteStorage, tx: SQLiteTransaction) -> None:
    s: SupportsTokens = tx
    r: TokenRepository = tx.tokens
    lookup: SupportsTokenLookup = storage
    del s, r, lookup


def postgres(storage: PostgresStorage, tx: PostgresTransaction) -> None:
    s: Storage = storage
    t: Transaction = tx
    lookup: SupportsTokenLookup = storage
    b: SupportsBlobs = tx
    p: ProfileRepository = tx.profiles
    a: AuditLog = tx.audit
    r: BlobRepository = tx.blobs
    tk: TokenRepository = tx.tokens
    c: CredentialRepository = tx.credentials
    th: ThrottleRepository = tx.throttle
    se: SessionRepository = tx.sessions
    lb: LabRepository = tx.lab
    ig: IntegrationRepository = tx.integrations
    has_tokens: SupportsTokens = tx
    has_credentials: SupportsCredentials = tx
    has_throttle: SupportsThrottle = tx
    has_sessions: SupportsSessions = tx
    has_lab: SupportsLab = tx
    has_integrations: SupportsIntegrations = tx
    del s, t, lookup, b, p, a, r, tk, c, th, se, lb, ig
    del has_tokens, has_credentials, has_throttle, has_sessions, has_lab, has_integrations
