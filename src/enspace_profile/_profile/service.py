"""The Profile tab's service: create, load, Save with optimistic concurrency, history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from enspace_profile._audit import AuditEvent, FieldChange, Notifier, deliver
from enspace_profile._capability import repository
from enspace_profile._clock import Clock
from enspace_profile._profile.avatar import Avatar, avatar_for
from enspace_profile._profile.domain import (
    Keep,
    PictureRef,
    Profile,
    ProfileEdit,
    ProfileRules,
    audit_value,
    validate_user_id,
)
from enspace_profile._random import RandomSource, new_id
from enspace_profile.exceptions import (
    ConflictError,
    FieldError,
    NotFoundError,
    ValidationError,
)
from enspace_profile.typing import Blob, BlobRepository, Storage, Transaction

__all__ = ["PROFILE_CREATED", "PROFILE_UPDATED", "ProfileService"]

#: Audit event kinds written by this service.
PROFILE_CREATED = "profile.created"
PROFILE_UPDATED = "profile.updated"


@attrs.frozen
class ProfileService:
    """Everything the Profile tab does. Reach it as ``panel.profile``.

    Args:
        storage: Where profiles and their history live.
        rules: What a valid profile is (names, languages, themes, pictures).
        clock: Source of the current time.
        rng: Source of randomness (event ids).
        notifier: Receives each audit event after its transaction committed.
    """

    storage: Storage
    rules: ProfileRules
    clock: Clock
    rng: RandomSource
    notifier: Notifier | None = None

    def create(
        self,
        user_id: str,
        *,
        first_name: str,
        last_name: str | None = None,
        language: str | None = None,
        theme: object = None,
        actor: str | None = None,
    ) -> Profile:
        """Create a user's profile.

        Args:
            user_id: The host's id for the user.
            first_name: Required.
            last_name: Optional.
            language: A language from the locale catalog (default: the catalog's default).
            theme: A theme preference (default: the theme catalog's default).
            actor: Who creates it, for the audit log (``None``: the user).

        Returns:
            The stored profile, at version 1.

        Raises:
            ValidationError: listing every invalid field.
            AlreadyExistsError: if the user already has a profile.
        """
        errors: list[FieldError] = []
        try:
            validate_user_id(user_id)
        except ValidationError as exc:
            errors.extend(exc.errors)
        try:
            edit = self.rules.new_values(
                first_name=first_name, last_name=last_name, language=language, theme=theme
            )
        except ValidationError as exc:
            errors.extend(exc.errors)
        if errors:
            raise ValidationError(errors)
        assert not isinstance(edit.first_name, Keep)
        assert not isinstance(edit.last_name, Keep)
        assert not isinstance(edit.language, Keep)
        assert not isinstance(edit.theme, Keep)
        now = self.clock.now()
        profile = Profile(
            user_id=user_id,
            first_name=edit.first_name,
            last_name=edit.last_name,
            language=edit.language,
            theme=edit.theme,
            created_at=now,
            updated_at=now,
            version=1,
        )
        event = AuditEvent(
            id=new_id(self.rng),
            user_id=user_id,
            kind=PROFILE_CREATED,
            at=now,
            actor=actor,
            version=1,
            changes=tuple(
                FieldChange(field=name, old=None, new=audit_value(name, getattr(profile, name)))
                for name in ("first_name", "last_name", "language", "theme")
            ),
        )
        with self.storage.transaction() as tx:
            tx.profiles.add(profile)
            tx.audit.append(event)
        deliver(self.notifier, [event])
        return profile

    def get(self, user_id: str) -> Profile:
        """Return the user's profile.

        Raises:
            NotFoundError: if the user has no profile.
        """
        with self.storage.transaction(write=False) as tx:
            profile = tx.profiles.get(user_id)
        if profile is None:
            raise NotFoundError("profile", user_id)
        return profile

    def save(
        self,
        user_id: str,
        changes: Mapping[str, object],
        *,
        version: int,
        actor: str | None = None,
    ) -> Profile:
        """Apply the Profile tab's Save: validate everything, then change atomically.

        Args:
            user_id: Whose profile.
            changes: Field name to new value; fields: ``first_name``, ``last_name``,
                ``language``, ``theme``, ``picture`` (image bytes, or ``None`` to remove).
            version: The version the user was editing (from :meth:`get`).
            actor: Who saves, for the audit log (``None``: the user).

        Returns:
            The profile as stored after the Save. If nothing actually changed, the
            current profile is returned unchanged: no new version, no audit event.

        Raises:
            ValidationError: listing every invalid field (unknown names included);
                nothing is changed.
            NotFoundError: if the user has no profile.
            ConflictError: if someone saved since ``version``; it carries
                ``current_version`` and the ``changed_fields``. Nothing is changed.
        """
        if type(version) is not int or version < 1:
            raise ValidationError.single("version", "invalid", "must be a positive integer")
        edit = self.rules.validate_changes(changes)
        with self.storage.transaction() as tx:
            current = tx.profiles.get(user_id)
            if current is None:
                raise NotFoundError("profile", user_id)
            if current.version != version:
                raise self._conflict(tx, current, version)
            updated, field_changes = edit.apply_to(current, now=self.clock.now())
            if not field_changes:
                return current
            tx.profiles.update(updated, expected_version=version)
            if updated.picture != current.picture:
                self._swap_picture(tx, current.picture, edit)
            event = AuditEvent(
                id=new_id(self.rng),
                user_id=user_id,
                kind=PROFILE_UPDATED,
                at=updated.updated_at,
                actor=actor,
                version=updated.version,
                changes=field_changes,
            )
            tx.audit.append(event)
        deliver(self.notifier, [event])
        return updated

    def history(self, user_id: str, *, limit: int | None = None) -> Sequence[AuditEvent]:
        """Return the profile's audit events, oldest first.

        Raises:
            NotFoundError: if the user never had a profile and has no events.
        """
        with self.storage.transaction(write=False) as tx:
            events = tx.audit.list_for_user(
                user_id, kinds=(PROFILE_CREATED, PROFILE_UPDATED), limit=limit
            )
            if not events and tx.profiles.get(user_id) is None:
                raise NotFoundError("profile", user_id)
        return events

    @staticmethod
    def _conflict(tx: Transaction, current: Profile, expected: int) -> ConflictError:
        changed: list[str] = []
        for event in tx.audit.list_for_user(current.user_id, kinds=(PROFILE_UPDATED,)):
            if event.version is not None and event.version > expected:
                changed.extend(f for f in event.changed_fields if f not in changed)
        return ConflictError(
            "profile",
            current.user_id,
            expected_version=expected,
            current_version=current.version,
            changed_fields=changed,
        )

    def _swap_picture(self, tx: Transaction, old: PictureRef | None, edit: ProfileEdit) -> None:
        """Keep the blob store in step with the profile: no orphan, no missing bytes."""
        blobs = require_blobs(tx, self.storage)
        new = edit.picture
        if new is not None and not isinstance(new, Keep):
            blobs.acquire(Blob(sha256=new.sha256, media_type=new.info.media_type, data=new.data))
        if old is not None:
            blobs.release(old.sha256)

    def avatar(self, user_id: str) -> Avatar:
        """Return the initials avatar shown when the user has no picture.

        Its colour is derived from the user id (stable across renames); its text from
        the current name. ``avatar.render_svg(size)`` gives a safe, self-contained SVG.

        Raises:
            NotFoundError: if the user has no profile.
        """
        profile = self.get(user_id)
        return avatar_for(user_id, profile.initials)

    def picture(self, user_id: str) -> Blob | None:
        """Return the user's picture bytes (metadata already stripped), or ``None``.

        Raises:
            NotFoundError: if the user has no profile.
        """
        with self.storage.transaction(write=False) as tx:
            profile = tx.profiles.get(user_id)
            if profile is None:
                raise NotFoundError("profile", user_id)
            if profile.picture is None:
                return None
            return require_blobs(tx, self.storage).get(profile.picture.sha256)


def require_blobs(tx: Transaction, storage: Storage) -> BlobRepository:
    """Return the transaction's blob repository or explain that the storage lacks one."""
    blobs: BlobRepository = repository(tx, "blobs", storage)
    return blobs
