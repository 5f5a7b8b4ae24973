"""No password, TOTP secret or recovery code ends up in the database, a repr or an event."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from enspace_profile import (
    Argon2idHasher,
    AuditEvent,
    AuthContext,
    FixedClock,
    InvalidCredentialsError,
    ManagedExternallyError,
    MemoryStorage,
    PasswordHash,
    SeededRandom,
    SQLiteStorage,
    UserPanel,
    converter,
)
from enspace_profile._crypto.keyring import EncryptionKey, KeyRing
from enspace_profile._security.totp import Totp, TotpSecret
from enspace_profile.typing import Storage, SupportsCredentials

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "purple elephants juggle quietly"
PEPPER = b"recovery-pepper-secret-bytes-123"
KEY = b"K" * 32


def forms(text: str) -> list[bytes]:
    """The ways a secret string could be written to bytes."""
    return [text.encode("utf-8"), text.encode("utf-16-le"), text.encode("utf-16-be")]


def secret_forms(raw: bytes) -> list[bytes]:
    return [
        raw,
        raw.hex().encode(),
        base64.b64encode(raw),
        base64.b32encode(raw).rstrip(b"="),
    ]


class Flow:
    """Runs every Security operation once and keeps what a leak could hide in."""

    def __init__(self, storage: Storage) -> None:
        self.events: list[AuditEvent] = []
        self.results: list[Any] = []
        self.errors: list[BaseException] = []
        self.clock = FixedClock(T0)
        self.panel = UserPanel(
            storage=storage,
            clock=self.clock,
            rng=SeededRandom(5),
            password_hash=PasswordHash([Argon2idHasher(memory_cost=64, iterations=1)]),
            key_ring=KeyRing([EncryptionKey(id="k1", key=KEY)]),
            recovery_pepper=PEPPER,
            notifier=self.events.append,
        )
        security = self.panel.security
        context = AuthContext(
            user_id="u1", authenticated_at=T0, factors={"password"}, session_id="s-1"
        )
        keep = self.results.append
        keep(security.register_session("u1", "s-1", ip_address="192.0.2.1", user_agent="Firefox"))
        keep(security.set_password("u1", PASSWORD, auth=context))
        keep(security.change_password("u1", PASSWORD, NEW_PASSWORD, auth=context))
        keep(security.verify_password("u1", NEW_PASSWORD))
        self.expect(InvalidCredentialsError, security.verify_password, "u1", PASSWORD)
        setup = security.start_totp("u1", auth=context, account_name="ada@example.com")
        keep(setup)
        self.secret = TotpSecret.from_base32(setup.secret)
        totp = Totp()
        keep(security.confirm_totp("u1", totp.code_at(self.secret, T0), auth=context))
        self.clock.advance(seconds=30)
        security.verify_totp("u1", totp.code_at(self.secret, self.clock.now()))
        self.expect(InvalidCredentialsError, security.verify_totp, "u1", "000000")
        new_codes = security.regenerate_recovery_codes("u1", auth=context)
        keep(new_codes)
        self.codes = new_codes.codes
        security.confirm_recovery_codes("u1", auth=context)
        keep(security.use_recovery_code("u1", self.codes[0]))
        self.expect(InvalidCredentialsError, security.use_recovery_code, "u1", self.codes[0])
        keep(security.overview("u1", current_session_id="s-1"))
        keep(security)
        with storage.transaction(write=False) as tx:
            assert isinstance(tx, SupportsCredentials)
            keep(tx.credentials.get("u1"))
        security.set_managed("u2", provider="Okta")
        self.expect(ManagedExternallyError, security.set_password, "u2", PASSWORD, auth=context)

    def expect(self, error: type[BaseException], call: Any, *args: Any, **kwargs: Any) -> None:
        with pytest.raises(error) as info:
            call(*args, **kwargs)
        self.errors.append(info.value)

    def secrets(self) -> list[bytes]:
        found = [*forms(PASSWORD), *forms(NEW_PASSWORD), *secret_forms(self.secret.value)]
        found += [*secret_forms(PEPPER), *secret_forms(KEY)]
        for code in self.codes:
            for spelling in (code, code.replace("-", ""), code.upper()):
                found += forms(spelling)
        return found

    def texts(self) -> list[bytes]:
        """Reprs, messages and events as text."""
        texts = [repr(x) for x in self.results] + [repr(e) for e in self.errors]
        texts += [str(e) for e in self.errors]
        texts += [repr(e) for e in self.events]
        texts += [json.dumps(converter.unstructure(e), default=str) for e in self.events]
        return [t.encode("utf-8") for t in texts]


def assert_no_secret(haystacks: list[bytes], secrets: list[bytes]) -> None:
    for secret in secrets:
        for haystack in haystacks:
            assert secret not in haystack, f"secret found: {secret[:6]!r}..."


class TestNoSecretsAnywhere:
    def test_sqlite_file_holds_no_secret(self, tmp_path: Path) -> None:
        """Every byte SQLite wrote (database, WAL, shared memory) is free of secrets."""
        storage = SQLiteStorage(tmp_path / "panel.db")
        flow = Flow(storage)
        files = [p.read_bytes() for p in tmp_path.iterdir() if p.is_file()]
        storage.close()
        files += [p.read_bytes() for p in tmp_path.iterdir() if p.is_file()]
        assert any(b"security_credentials" in data for data in files)
        assert_no_secret(files, flow.secrets())

    @pytest.mark.parametrize("kind", ["memory", "sqlite"])
    def test_reprs_messages_and_events_hold_no_secret(self, kind: str, tmp_path: Path) -> None:
        """Results, stored records, errors and events never show a secret."""
        storage: Storage = (
            MemoryStorage() if kind == "memory" else SQLiteStorage(tmp_path / "panel.db")
        )
        flow = Flow(storage)
        assert len(flow.events) >= 6
        haystacks = flow.texts()
        if isinstance(storage, MemoryStorage):
            haystacks.append(repr(storage._tables).encode())
        assert_no_secret(haystacks, flow.secrets())
        storage.close()

    def test_shown_once_values_are_hidden_from_repr(self) -> None:
        """The TOTP secret, its URI and new recovery codes never appear in a repr."""
        flow = Flow(MemoryStorage())
        setup = next(r for r in flow.results if type(r).__name__ == "TotpSetup")
        assert setup.secret not in repr(setup)
        assert "otpauth" not in repr(setup)
        codes = next(r for r in flow.results if type(r).__name__ == "NewRecoveryCodes")
        assert "<10 codes hidden>" in repr(codes)
        assert "recovery_pepper=<set>" in repr(flow.panel.security)
