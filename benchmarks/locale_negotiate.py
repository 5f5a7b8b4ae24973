"""Benchmark LocaleCatalog: Accept-Language negotiation, catalog build time and memory.

Run from the repository root::

    python benchmarks/locale_negotiate.py

Every timing is the median of many rounds (time.perf_counter_ns). Negotiation is
measured warm (the header cache hit a server sees for repeat visitors), with distinct
headers (header cache missed; item and range caches warm after the first few) and
fully cold (all three caches cleared before every call), next to two baselines
measured in the same run on the same headers: a plain dict lookup of the header (the
floor for any cache) and Babel's own ``babel.negotiate_locale`` fed with the header's
ranges split naively (it has no header parser, no q-values and no CLDR fallbacks).
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence

import babel
import babel.core
import babel.localedata

from enspace_profile._profile.locales import DEFAULT_LANGUAGES, LocaleCatalog

HEADERS = (
    "pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7",  # Chrome, Brazil
    "en-US,en;q=0.9",  # Chrome, US
    "en-GB,en;q=0.9,en-US;q=0.8",  # Chrome, UK
    "zh-TW",  # Safari, Taiwan
    "zh-CN,zh;q=0.9",  # Chrome, mainland China
    "fr-FR,fr;q=0.8,en-US;q=0.5,en;q=0.3",  # Firefox, France
    "de,en-US;q=0.7,en;q=0.3",  # Firefox, Germany
    "es-MX,es;q=0.9,en;q=0.8",  # Chrome, Mexico
    "ja,en-US;q=0.9,en;q=0.8",  # Chrome, Japan
    "ar-SA,ar;q=0.9,en-US;q=0.8,en;q=0.7",  # Chrome, Saudi Arabia
    "he-IL,he;q=0.9,en-US;q=0.8,en;q=0.7",  # Chrome, Israel
    "sv-SE,sv;q=0.9,en-US;q=0.8,en;q=0.7",  # unsupported first choice
)
RANGE_POOL = (
    "en",
    "en-US",
    "en-GB",
    "pt-BR",
    "pt",
    "pt-PT",
    "es",
    "es-MX",
    "es-AR",
    "fr",
    "fr-CA",
    "de",
    "de-CH",
    "zh-TW",
    "zh-CN",
    "zh-HK",
    "ja",
    "ko",
    "ar",
    "he",
    "iw",
    "sv",
    "nl",
    "*",
)
QVALUES = ("0.9", "0.8", "0.7", "0.6", "0.5", "0.4", "0.3", "0.2", "0.1")
ROUNDS = 201
CALLS_PER_ROUND = 2_400
BUILD_ROUNDS = 7


def naive_ranges(header: str) -> list[str]:
    """What a caller of babel.negotiate_locale has to do first: split out the ranges."""
    return [item.split(";", 1)[0].strip().replace("-", "_") for item in header.split(",")]


def per_call_ns(function: Callable[[str], object], inputs: Sequence[str]) -> float:
    """Median over rounds of the mean time of one call, looping over ``inputs``."""
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for value in inputs:
            function(value)
        samples.append((time.perf_counter_ns() - start) / len(inputs))
    return statistics.median(samples)


def distinct_headers(count: int) -> list[str]:
    """Realistic but all different headers (seeded), so none is a header-cache hit."""
    rng = random.Random(20240601)
    seen: set[str] = set()
    while len(seen) < count:
        size = rng.randint(1, 5)
        parts = [rng.choice(RANGE_POOL)]
        parts += [f"{rng.choice(RANGE_POOL)};q={rng.choice(QVALUES)}" for _ in range(size)]
        seen.add(",".join(parts))
    return sorted(seen)


def cold_ns(catalog: LocaleCatalog, inputs: Sequence[str]) -> float:
    """Median time of one call with both caches cleared first (clearing not timed)."""
    caches = (
        catalog._header_cache,  # noqa: SLF001 - the benchmark measures the caches
        catalog._item_cache,  # noqa: SLF001
        catalog._range_cache,  # noqa: SLF001
    )
    samples = []
    for _ in range(5):
        for value in inputs:
            for cache in caches:
                cache.cache_clear()  # type: ignore[attr-defined]
            start = time.perf_counter_ns()
            catalog.negotiate(value)
            samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples)


def forget_babel_data() -> None:
    """Drop Babel's in-process caches so the next build reads locale files again."""
    babel.localedata._cache.clear()  # noqa: SLF001
    babel.localedata._dict_cache.clear()  # noqa: SLF001
    babel.core._global_data = None  # noqa: SLF001


def build_times_ms() -> tuple[float, float]:
    """Median build time of the shipped catalog: cold (files read) and warm (Babel cached)."""
    cold = []
    for _ in range(BUILD_ROUNDS):
        forget_babel_data()
        gc.collect()
        start = time.perf_counter_ns()
        LocaleCatalog.default()
        cold.append(time.perf_counter_ns() - start)
    warm = []
    for _ in range(BUILD_ROUNDS * 3):
        start = time.perf_counter_ns()
        LocaleCatalog.default()
        warm.append(time.perf_counter_ns() - start)
    return statistics.median(cold) / 1e6, statistics.median(warm) / 1e6


def build_memory_kib() -> tuple[float, float, float, int]:
    """Memory of building the shipped catalog: retained and peak (cold), retained (warm)."""
    forget_babel_data()
    gc.collect()
    tracemalloc.start()
    catalog = LocaleCatalog.default()
    cold_current, cold_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    loaded = len(babel.localedata._cache)  # noqa: SLF001
    gc.collect()
    tracemalloc.start()
    again = LocaleCatalog.default()
    warm_current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del catalog, again
    return cold_current / 1024, cold_peak / 1024, warm_current / 1024, loaded


def main() -> None:
    """Print the numbers."""
    print(f"Babel {babel.__version__}; catalog of {len(DEFAULT_LANGUAGES)} languages")
    cold_build, warm_build = build_times_ms()
    retained, peak, warm_retained, loaded = build_memory_kib()
    print(f"build (cold, reads CLDR files): {cold_build:8.2f} ms median of {BUILD_ROUNDS}")
    print(f"build (warm, Babel cached):     {warm_build:8.2f} ms median of {BUILD_ROUNDS * 3}")
    print(
        f"memory (cold build): {retained:8.0f} KiB retained, {peak:8.0f} KiB peak, "
        f"{loaded} locale files loaded",
    )
    print(f"memory (warm build, catalog and tables only): {warm_retained:8.0f} KiB")

    catalog = LocaleCatalog.default()
    available = list(catalog.identifiers)
    table = {header: catalog.negotiate(header) for header in HEADERS}
    warm_inputs = list(HEADERS) * (CALLS_PER_ROUND // len(HEADERS))

    def babel_negotiate(header: str) -> str | None:
        return babel.negotiate_locale(naive_ranges(header), available)

    dict_ns = per_call_ns(table.get, warm_inputs)
    babel_ns = per_call_ns(babel_negotiate, warm_inputs)
    warm_ns = per_call_ns(catalog.negotiate, warm_inputs)

    fresh = distinct_headers(CALLS_PER_ROUND * 4)
    uncached_samples = []
    for start in range(0, len(fresh), CALLS_PER_ROUND):
        chunk = fresh[start : start + CALLS_PER_ROUND]
        catalog._header_cache.cache_clear()  # type: ignore[attr-defined]  # noqa: SLF001
        begin = time.perf_counter_ns()
        for header in chunk:
            catalog.negotiate(header)
        uncached_samples.append((time.perf_counter_ns() - begin) / len(chunk))
    uncached_ns = statistics.median(uncached_samples)
    babel_fresh_ns = per_call_ns(babel_negotiate, fresh[:CALLS_PER_ROUND])
    cold_call_ns = cold_ns(catalog, HEADERS)

    print()
    print(f"negotiate, {len(HEADERS)} realistic headers, ns per call (median of {ROUNDS} rounds)")
    print(f"  baseline dict.get(header):            {dict_ns:8.0f}")
    print(f"  baseline babel.negotiate_locale:      {babel_ns:8.0f}")
    print(
        f"  LocaleCatalog.negotiate (warm):       {warm_ns:8.0f}"
        f"   x{warm_ns / dict_ns:.1f} dict, x{warm_ns / babel_ns:.2f} babel",
    )
    print(
        f"  distinct headers (header cache miss): {uncached_ns:8.0f}"
        f"   x{uncached_ns / babel_fresh_ns:.2f} babel on the same headers ({babel_fresh_ns:.0f})",
    )
    print(
        f"  fully cold (all caches cleared):      {cold_call_ns:8.0f}"
        f"   x{cold_call_ns / babel_ns:.2f} babel",
    )
    goal = "met" if warm_ns <= 5_000 else "MISSED"
    print(f"  goal <= 5000 ns warm median: {goal}")


if __name__ == "__main__":
    main()
