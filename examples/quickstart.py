"""Quickstart: the Profile tab on the embedded SQLite default.

Run: python examples/quickstart.py [path/to/panel.db]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from enspace_profile import ConflictError, UserPanel, ValidationError


def main(path: Path) -> None:
    with UserPanel.open(path) as panel:
        # Create a profile (the host supplies the user id).
        profile = panel.profile.create("user-42", first_name="  ada ", last_name="Lovelace")
        print(
            f"created {profile.display_name!r} (initials {profile.initials}), "
            f"language {profile.language}, version {profile.version}"
        )

        # The Profile tab: edit, then Save with the version you loaded.
        profile = panel.profile.save(
            "user-42",
            {
                "first_name": "Ada",
                "language": "pt-BR",
                "theme": {"mode": "sync", "day": "light", "night": "dark"},
            },
            version=profile.version,
        )
        print(
            f"saved: {profile.display_name}, language {profile.language}, "
            f"theme at night {profile.theme.resolve('dark')!r}, version {profile.version}"
        )

        # Bad input: every problem at once, each with a stable code.
        try:
            panel.profile.save(
                "user-42", {"first_name": "", "language": "xx"}, version=profile.version
            )
        except ValidationError as exc:
            print("refused:", ", ".join(exc.codes))

        # Two people pressing Save from the same version: the second is told, not lost.
        panel.profile.save("user-42", {"last_name": "King"}, version=profile.version)
        try:
            panel.profile.save("user-42", {"first_name": "Augusta"}, version=profile.version)
        except ConflictError as exc:
            print(
                f"conflict: now at version {exc.current_version}, "
                f"changed meanwhile: {', '.join(exc.changed_fields)}"
            )

        # Language: negotiate a default from the browser, list what the menu offers.
        print("negotiated from 'es-MX,es;q=0.9':", panel.locales.negotiate("es-MX,es;q=0.9"))
        print(
            "languages:", ", ".join(lang.native_name for lang in panel.locales.languages[:6]), "..."
        )

        # Themes: what to render for the user's day/night preference.
        current = panel.profile.get("user-42")
        for scheme in ("light", "dark"):
            theme = panel.themes.resolve(current.theme, scheme)
            print(f"system {scheme}: render {theme.id!r} (background {theme.tokens.background})")

        # Avatar: no picture yet, so the initials on a stable, readable colour.
        avatar = panel.profile.avatar("user-42")
        print(
            f"avatar {avatar.initials!r} on {avatar.background}: "
            f"{len(avatar.render_svg(64))} bytes of SVG"
        )

        print("history:")
        for event in panel.profile.history("user-42"):
            changes = "; ".join(f"{c.field}: {c.old!r} -> {c.new!r}" for c in event.changes)
            print(f"  v{event.version} {event.kind} at {event.at:%H:%M:%S} {changes}")

        # The tab bar for this user: every tab with its status (and why, if not available).
        print("tabs:")
        for tab in panel.tabs.for_user("user-42"):
            note = tab.reason or tab.notice
            print(f"  {tab.label:<13} {tab.status:<12} {note.text if note else ''}".rstrip())


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "panel.db")
