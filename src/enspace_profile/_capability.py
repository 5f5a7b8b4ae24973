"""One rule for optional storage capabilities, shared by every service.

A transaction offers an optional repository as an attribute (``tx.tokens``,
``tx.blobs``, ...), as declared by the ``Supports*`` Protocols in
:mod:`enspace_profile.typing`. Checking with ``isinstance(tx, SupportsX)`` on a
runtime-checkable Protocol costs microseconds per call; a ``getattr`` says the same
thing for a fraction of that, which matters on hot paths.
"""

from __future__ import annotations

from typing import Any

from enspace_profile.exceptions import CapabilityError

__all__ = ["optional_repository", "repository"]


def optional_repository(tx: object, name: str) -> Any:
    """Return ``tx.<name>``, or ``None`` when the storage does not offer it."""
    return getattr(tx, name, None)


def repository(tx: object, name: str, storage: object) -> Any:
    """Return ``tx.<name>`` or raise :class:`CapabilityError` naming the missing repository.

    Callers annotate the result with the repository Protocol they asked for.
    """
    repo = getattr(tx, name, None)
    if repo is None:
        raise CapabilityError(name, storage)
    return repo
