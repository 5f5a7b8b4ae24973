"""The facade: one :class:`UserPanel` per host, wiring storage, catalogs and policies to tabs.

It holds no logic of its own; each tab is a service attribute.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Self

from enspace_profile._audit import Notifier
from enspace_profile._clock import Clock, SystemClock
from enspace_profile._profile.domain import ProfileRules
from enspace_profile._profile.locales import LocaleCatalog
from enspace_profile._profile.names import NamePolicy
from enspace_profile._profile.service import ProfileService
from enspace_profile._profile.themes import ThemeCatalog
from enspace_profile._random import RandomSource, SystemRandom
from enspace_profile.typing import Storage

if TYPE_CHECKING:
    from enspace_profile._profile.images import PicturePolicy

__all__ = ["UserPanel"]


class UserPanel:
    """The back end of the User Panel: one object per host application.

    Args:
        storage: Where everything is kept (:class:`~enspace_profile.MemoryStorage`,
            :class:`~enspace_profile.SQLiteStorage`, or your own adapter).
        locales: UI languages offered (default: :meth:`LocaleCatalog.default`).
        themes: Themes offered (default: :meth:`ThemeCatalog.default`).
        names: Name length limits.
        pictures: Limits for profile pictures.
        clock: Source of time (inject a ``FixedClock`` in tests).
        rng: Source of randomness (the OS CSPRNG by default).
        notifier: Called with each audit event after it committed (emails, webhooks).

    Attributes:
        profile: The Profile tab (:class:`~enspace_profile.ProfileService`).

    >>> from enspace_profile import UserPanel, MemoryStorage
    >>> panel = UserPanel(storage=MemoryStorage())
    >>> panel.profile.create("u1", first_name="Ada", last_name="Lovelace").display_name
    'Ada Lovelace'
    """

    def __init__(
        self,
        *,
        storage: Storage,
        locales: LocaleCatalog | None = None,
        themes: ThemeCatalog | None = None,
        names: NamePolicy | None = None,
        pictures: PicturePolicy | None = None,
        clock: Clock | None = None,
        rng: RandomSource | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.storage = storage
        self.clock: Clock = clock or SystemClock()
        self.rng: RandomSource = rng or SystemRandom()
        self.locales = LocaleCatalog.default() if locales is None else locales
        self.themes = ThemeCatalog.default() if themes is None else themes
        if pictures is None:
            from enspace_profile._profile.images import PicturePolicy  # noqa: PLC0415

            pictures = PicturePolicy()
        rules = ProfileRules(
            names=names or NamePolicy(),
            locales=self.locales,
            themes=self.themes,
            pictures=pictures,
        )
        self.notifier = notifier
        self.profile = ProfileService(
            storage=storage, rules=rules, clock=self.clock, rng=self.rng, notifier=notifier
        )

    @classmethod
    def open(cls, path: str | os.PathLike[str], **options: object) -> Self:
        """Open (creating and migrating if needed) the embedded SQLite default at ``path``.

        Args:
            path: The database file (``":memory:"`` for a throwaway database).
            **options: Passed to :class:`UserPanel` (``clock``, ``locales``, ...).

        Raises:
            SchemaVersionError: if the file was written by a newer version.
            StorageError: if the file is not a usable SQLite database.
        """
        from enspace_profile.stores.sqlite import SQLiteStorage  # noqa: PLC0415 - keep import light

        return cls(storage=SQLiteStorage(path), **options)  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the storage."""
        self.storage.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<UserPanel storage={self.storage!r}>"
