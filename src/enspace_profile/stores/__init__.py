"""Storage adapters: :mod:`.memory` and :mod:`.sqlite`; more behind extras."""
