"""Row-to-domain conversion shared by the SQL adapters (SQLite and PostgreSQL).

Both store a profile in the same columns; they differ only in how a timestamp comes
back from the driver (ISO text from SQLite, a ``datetime`` from psycopg), so the
caller passes that conversion in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from enspace_profile._audit import AuditEvent, FieldChange
from enspace_profile._profile.domain import PictureRef, Profile
from enspace_profile._profile.themes import ThemeMode, ThemePreference

__all__ = ["PROFILE_COLUMNS", "content_values", "event_from_row", "profile_from_row"]

#: The ``profiles`` columns, in the order both adapters select and insert them.
PROFILE_COLUMNS: Final = (
    "user_id, first_name, last_name, language, theme_mode, theme_day, theme_night, "
    "picture_sha256, picture_media_type, picture_width, picture_height, picture_size, "
    "created_at, updated_at, version"
)


@functools.lru_cache(maxsize=512)
def _theme(mode: str, day: str, night: str | None) -> ThemePreference:
    """Rebuild a stored preference; immutable, so equal rows share one object."""
    return ThemePreference(mode=ThemeMode(mode), day=day, night=night)


def profile_from_row(row: Sequence[Any], read_time: Callable[[Any], datetime]) -> Profile:
    """Build a :class:`Profile` from a row selected as :data:`PROFILE_COLUMNS`."""
    picture = None
    if row[7] is not None:
        picture = PictureRef(
            sha256=row[7], media_type=row[8], width=row[9], height=row[10], size=row[11]
        )
    return Profile(
        user_id=row[0],
        first_name=row[1],
        last_name=row[2],
        language=row[3],
        theme=_theme(row[4], row[5], row[6]),
        picture=picture,
        created_at=read_time(row[12]),
        updated_at=read_time(row[13]),
        version=row[14],
    )


def content_values(p: Profile) -> tuple[Any, ...]:
    """Return columns ``first_name`` .. ``picture_size`` of ``p`` (what a Save rewrites)."""
    picture = p.picture
    theme = p.theme
    return (
        p.first_name,
        p.last_name,
        p.language,
        theme.mode.value,
        theme.day,
        theme.night,
        None if picture is None else picture.sha256,
        None if picture is None else picture.media_type,
        None if picture is None else picture.width,
        None if picture is None else picture.height,
        None if picture is None else picture.size,
    )


def event_from_row(
    row: Sequence[Any],
    read_time: Callable[[Any], datetime],
    read_json: Callable[[Any], Any],
) -> AuditEvent:
    """Build an :class:`AuditEvent` from an ``audit_events`` row.

    Columns: id, user_id, kind, at, actor, subject, version, changes, details.
    """
    return AuditEvent(
        id=row[0],
        user_id=row[1],
        kind=row[2],
        at=read_time(row[3]),
        actor=row[4],
        subject=row[5],
        version=row[6],
        changes=tuple(FieldChange(field=f, old=o, new=n) for f, o, n in read_json(row[7])),
        details=read_json(row[8]),
    )
