"""enspace_profile: the back end of a SaaS User Panel."""

from enspace_profile import exceptions

__all__ = ["exceptions"]
