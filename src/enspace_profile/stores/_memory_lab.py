"""The in-memory lab choices repository (part of :class:`~enspace_profile.MemoryStorage`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from enspace_profile._lab.domain import OptIn

if TYPE_CHECKING:
    from enspace_profile.stores.memory import Journal

__all__ = ["LabTables", "MemoryLab"]

_REVISION = "revision"


@attrs.define
class LabTables:
    """The lab state of one MemoryStorage.

    Attributes:
        choices: Each user's choices by feature key.
        changes: The revision at which each user's choices were last written.
        meta: The global change marker (``meta["revision"]``).
    """

    choices: dict[str, dict[str, OptIn]] = attrs.Factory(dict)
    changes: dict[str, int] = attrs.Factory(dict)
    meta: dict[str, int] = attrs.Factory(lambda: {_REVISION: 0})


class MemoryLab:
    """Lab choices in memory (implements ``LabRepository``)."""

    __slots__ = ("_j", "_t")

    def __init__(self, tables: LabTables, journal: Journal) -> None:
        self._t = tables
        self._j = journal

    def list_for_user(self, user_id: str) -> Sequence[OptIn]:
        mine = self._t.choices.get(user_id, {})
        return [mine[key] for key in sorted(mine)]

    def put(self, choice: OptIn) -> None:
        tables = self._t
        mine = tables.choices.get(choice.user_id)
        if mine is None:
            mine = {}
            self._j.put(tables.choices, choice.user_id, mine)
        self._j.put(mine, choice.key, choice)
        self._bump(choice.user_id)

    def delete_for_user(self, user_id: str) -> int:
        mine = self._j.pop(self._t.choices, user_id)  # refuses in a read-only transaction
        if not isinstance(mine, dict) or not mine:
            return 0
        self._bump(user_id)
        return len(mine)

    def revision(self) -> int:
        return self._t.meta[_REVISION]

    def changed_since(self, revision: int, *, limit: int) -> Sequence[str]:
        changed = sorted((at, user_id) for user_id, at in self._t.changes.items() if at > revision)
        return [user_id for _, user_id in changed[: max(limit, 0)]]

    def _bump(self, user_id: str) -> None:
        revision = self._t.meta[_REVISION] + 1
        self._j.put(self._t.meta, _REVISION, revision)
        self._j.put(self._t.changes, user_id, revision)
