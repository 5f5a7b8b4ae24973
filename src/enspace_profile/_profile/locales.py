"""The UI languages a host supports: validating a user's choice and negotiating a default.

A :class:`LocaleCatalog` is the list of UI languages a host has translations for. It
answers two questions for the Profile tab:

* **Is this language setting acceptable?** :meth:`LocaleCatalog.validate` accepts any
  spelling of a supported identifier (``pt-br``, ``PT_BR``) and returns the canonical
  one (``pt_BR``), or raises :class:`~enspace_profile.exceptions.ValidationError`.
* **Which language should a new user see?** :meth:`LocaleCatalog.negotiate` reads an
  HTTP ``Accept-Language`` header and picks the best supported language, falling back
  to the catalog default. It never raises.

Everything locale-specific (names, text direction, likely subtags, parent locales,
deprecated codes) comes from CLDR through Babel. Babel is imported lazily: importing
this module loads no locale data; building a catalog loads only the data of the
catalog's own locales (and their CLDR parents), plus Babel's small global table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Literal, NamedTuple, overload

import attrs

from enspace_profile.exceptions import FieldError, ValidationError

__all__ = [
    "DEFAULT_LANGUAGES",
    "MAX_HEADER_ITEMS",
    "MAX_HEADER_LENGTH",
    "Language",
    "LocaleCatalog",
    "TextDirection",
]

TextDirection = Literal["ltr", "rtl"]
"""The direction a language is written in: ``"ltr"`` or ``"rtl"``."""

DEFAULT_LANGUAGES: Final[tuple[str, ...]] = (
    "en",
    "es",
    "es_419",
    "fr",
    "de",
    "it",
    "pt_BR",
    "nl",
    "pl",
    "ru",
    "tr",
    "ar",
    "he",
    "hi",
    "ja",
    "ko",
    "zh_Hans",
    "zh_Hant",
)
"""The identifiers of :meth:`LocaleCatalog.default`, in menu order."""

MAX_HEADER_LENGTH: Final = 4096
"""Characters of an ``Accept-Language`` header that are read; the rest is ignored."""

MAX_HEADER_ITEMS: Final = 32
"""Comma-separated items of an ``Accept-Language`` header that are read."""

_MAX_IDENTIFIER_LENGTH: Final = 64
_CACHEABLE_HEADER_LENGTH: Final = 512
_CACHEABLE_ITEM_LENGTH: Final = 128
_HEADER_CACHE_SIZE: Final = 1024
_ITEM_CACHE_SIZE: Final = 1024
_RANGE_CACHE_SIZE: Final = 512
_MAX_PARENT_STEPS: Final = 8

_FULL_WEIGHT: Final = 1000
_MALFORMED_WEIGHT: Final = -1
_WILDCARD: Final = "*"
_UNDETERMINED: Final = "und"

# A language tag as users and browsers spell it: a 2-8 letter language subtag, then
# 1-8 character alphanumeric subtags joined by "-" or "_" (ASCII only, by construction).
_TAG: Final = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*")
# RFC 9110 section 12.4.2: at most three decimals, never above 1.
_QVALUE: Final = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_OWS: Final = " \t"


@attrs.frozen(kw_only=True)
class Language:
    """One UI language of a catalog, with everything a language menu needs.

    Attributes:
        identifier: The canonical Babel/CLDR identifier (``"pt_BR"``, ``"zh_Hant"``);
            this is what is stored as a user's setting.
        tag: The BCP 47 tag for ``lang`` attributes and ``Content-Language``
            (``"pt-BR"``, ``"zh-Hant"``).
        native_name: The language's name in itself, capitalised for a menu
            (``"Português (Brasil)"``, ``"Deutsch"``, ``"中文 (简体)"``).
        english_name: The language's name in English (``"Portuguese (Brazil)"``).
        direction: ``"rtl"`` for scripts written right to left (Arabic, Hebrew),
            else ``"ltr"``; taken from CLDR's character order for the locale.
    """

    identifier: str
    tag: str
    native_name: str
    english_name: str
    direction: TextDirection = attrs.field(validator=attrs.validators.in_(("ltr", "rtl")))


class _Key(NamedTuple):
    """A language tag split into subtags, cased as CLDR writes them (`zh`, `Hant`, `TW`)."""

    language: str
    script: str | None
    region: str | None
    variants: tuple[str, ...] = ()


class _Resolution(NamedTuple):
    """What one ``Accept-Language`` range means for a catalog.

    ``excludes`` are the catalog entries a ``q=0`` on this range rules out (RFC 4647
    basic filtering: ``pt`` rules out ``pt_BR`` and ``pt_PT``); ``candidates`` are the
    catalog entries the range may fall back to, best first.
    """

    excludes: tuple[str, ...]
    candidates: tuple[str, ...]


class _Item(NamedTuple):
    """One readable ``Accept-Language`` item: its weight and what its range resolves to."""

    weight: int
    resolution: _Resolution


def _split_subtags(normalized: str) -> _Key | None:
    """Split a lower-case, ``_``-separated tag into subtags (script not yet filled in).

    Extended-language subtags are skipped; an extension or private-use singleton ends
    the tag. Returns ``None`` when the first subtag is not a language.
    """
    subtags = normalized.split("_")
    language = subtags[0]
    if not (2 <= len(language) <= 8 and language.isalpha()):
        return None
    script: str | None = None
    region: str | None = None
    variants: list[str] = []
    for subtag in subtags[1:]:
        if len(subtag) <= 1:
            break
        bare = script is None and region is None and not variants
        if bare and len(subtag) == 4 and subtag.isalpha():
            script = subtag.title()
        elif (
            region is None
            and not variants
            and ((len(subtag) == 2 and subtag.isalpha()) or (len(subtag) == 3 and subtag.isdigit()))
        ):
            region = subtag.upper()
        elif bare and len(subtag) == 3 and subtag.isalpha():
            continue
        else:
            variants.append(subtag.upper())
    return _Key(language, script, region, tuple(variants))


def _normalize(text: str) -> str:
    """Lower-case a (validated, ASCII) tag and use ``_`` as the only separator."""
    return text.lower().replace("-", "_")


def _to_tag(identifier: str) -> str:
    """Turn a canonical CLDR identifier into its BCP 47 spelling (``zh_Hant`` -> ``zh-Hant``)."""
    language, *rest = identifier.split("_")
    parts = [language]
    # BCP 47 writes variants in lower case; scripts and regions keep CLDR's case.
    parts.extend(
        subtag.lower() if len(subtag) >= 5 or subtag[:1].isdigit() else subtag for subtag in rest
    )
    return "-".join(parts)


def _menu_case(name: str) -> str:
    """Capitalise the first letter of a language name, as a menu entry shows it."""
    return name[:1].title() + name[1:]


@attrs.frozen
class _Cldr:
    """The slices of Babel's global CLDR data that matching needs (read-only)."""

    likely_subtags: Mapping[str, str]
    parent_exceptions: Mapping[str, str]
    language_aliases: Mapping[str, str]

    @classmethod
    def load(cls) -> _Cldr:
        """Read the tables from Babel (imports Babel; loads no per-locale data)."""
        from babel.core import get_global  # noqa: PLC0415 - keep Babel out of package import

        return cls(
            likely_subtags=get_global("likely_subtags"),
            parent_exceptions=get_global("parent_exceptions"),
            language_aliases=get_global("language_aliases"),
        )

    def _likely(self, probe: str) -> _Key | None:
        value = self.likely_subtags.get(probe)
        if value is None:
            return None
        parts = value.split("_")
        if len(parts) == 3:  # CLDR's shape: language_Script_REGION
            return _Key(parts[0], parts[1], parts[2])
        return _split_subtags(value.lower())  # pragma: no cover - defensive

    def default_script(self, language: str) -> str | None:
        """The script a language is written in unless a tag says otherwise (``zh`` -> Hans)."""
        likely = self._likely(language)
        return None if likely is None else likely.script

    def dealias(self, key: _Key) -> _Key:
        """Replace a deprecated language code (``iw`` -> ``he``, ``sh`` -> ``sr_Latn``)."""
        replacement = self.language_aliases.get(key.language)
        if replacement is None:
            return key
        target = _split_subtags(replacement.lower())
        if target is None:
            return key
        return _Key(
            target.language,
            key.script or target.script,
            key.region or target.region,
            key.variants,
        )

    def maximize(self, key: _Key) -> _Key:
        """Fill in script and region from CLDR likely subtags (``zh_TW`` -> ``zh_Hant_TW``).

        The language itself is never replaced, so ``und`` stays undetermined.
        """
        if key.language == _UNDETERMINED or (key.script and key.region):
            return key
        language, script, region = key.language, key.script, key.region
        probes = [
            f"{language}_{script}_{region}" if script and region else None,
            f"{language}_{region}" if region else None,
            f"{language}_{script}" if script else None,
            language,
        ]
        for probe in probes:
            likely = None if probe is None else self._likely(probe)
            if likely is not None:
                return _Key(
                    language, script or likely.script, region or likely.region, key.variants
                )
        return key

    def with_script(self, key: _Key) -> _Key:
        """Fill in only the script (``pt_BR`` -> ``pt_Latn_BR``): how catalog entries are keyed."""
        if key.script is not None:
            return key
        return key._replace(script=self.default_script(key.language))

    def cldr_id(self, key: _Key) -> str:
        """The CLDR identifier of a key without variants; the script only when not the default."""
        parts = [key.language]
        if key.script is not None and key.script != self.default_script(key.language):
            parts.append(key.script)
        if key.region is not None:
            parts.append(key.region)
        return "_".join(parts)

    def parent(self, key: _Key) -> _Key | None:
        """The CLDR parent locale (``es_MX`` -> ``es_419`` -> ``es``), ``None`` at the root.

        A language with a non-default script has the root as parent (``zh_Hant`` is not
        a kind of ``zh``), as in CLDR.
        """
        if key.variants:
            return key._replace(variants=())
        exception = self.parent_exceptions.get(self.cldr_id(key))
        if exception is not None:
            parent = _split_subtags(exception.lower())
            return None if parent is None else self.with_script(parent)
        if key.region is not None:
            return key._replace(region=None)
        return None

    def chain(self, key: _Key) -> tuple[_Key, ...]:
        """The key followed by its CLDR ancestors, most specific first."""
        nodes = [key]
        parent = self.parent(key)
        while parent is not None and parent not in nodes and len(nodes) <= _MAX_PARENT_STEPS:
            nodes.append(parent)
            parent = self.parent(parent)
        return tuple(nodes)


@attrs.frozen
class _Matcher:
    """Lookup tables built once per catalog, and the per-range resolution that uses them."""

    cldr: _Cldr
    by_text: Mapping[str, str]
    by_prefix: Mapping[str, tuple[str, ...]]
    by_key: Mapping[_Key, str]
    by_ancestor: Mapping[_Key, tuple[str, ...]]

    @classmethod
    def build(cls, identifiers: tuple[str, ...]) -> _Matcher:
        """Precompute the tables for catalog entries given in catalog order."""
        cldr = _Cldr.load()
        by_text: dict[str, str] = {}
        by_prefix: dict[str, tuple[str, ...]] = {}
        by_key: dict[_Key, str] = {}
        descendants: dict[_Key, list[str]] = {}
        for identifier in identifiers:
            by_text[_normalize(identifier)] = identifier
            subtags = _normalize(identifier).split("_")
            for end in range(1, len(subtags) + 1):
                prefix = "_".join(subtags[:end])
                by_prefix[prefix] = (*by_prefix.get(prefix, ()), identifier)
            split = _split_subtags(_normalize(identifier))
            if split is None:  # pragma: no cover - catalog identifiers are CLDR locales
                continue
            key = cldr.with_script(split)
            by_key.setdefault(key, identifier)
            for ancestor in cldr.chain(key)[1:]:
                descendants.setdefault(ancestor, []).append(identifier)
        by_ancestor: dict[_Key, tuple[str, ...]] = {}
        for ancestor, members in descendants.items():
            # Among regional variants, the one CLDR considers most likely comes first
            # (a plain "pt" request prefers pt_BR over pt_PT), then catalog order.
            likely = by_key.get(cldr.maximize(ancestor))
            ranked = sorted(members, key=lambda member: member != likely)
            by_ancestor[ancestor] = tuple(ranked)
        return cls(
            cldr=cldr,
            by_text=by_text,
            by_prefix=by_prefix,
            by_key=by_key,
            by_ancestor=by_ancestor,
        )

    def resolve(self, normalized: str) -> _Resolution:
        """Resolve one lower-case, ``_``-separated language range against the catalog.

        Candidates, best first: the exact identifier; the identifier after replacing a
        deprecated code; the CLDR parent chain of the tag with likely subtags filled in
        (``zh_TW`` -> ``zh_Hant_TW`` -> ``zh_Hant``; ``es_MX`` -> ``es_419`` -> ``es``);
        RFC 4647 truncation of the tag as written; and finally other regional variants
        of an ancestor (``pt_PT`` -> ``pt_BR``).
        """
        spellings = [normalized]
        chain: tuple[_Key, ...] = ()
        split = _split_subtags(normalized)
        if split is not None and split.language != _UNDETERMINED:
            dealiased = self.cldr.dealias(split)
            if dealiased != split:
                spellings.append(_normalize(self.cldr.cldr_id(self.cldr.with_script(dealiased))))
            chain = self.cldr.chain(self.cldr.maximize(dealiased))
        subtags = normalized.split("_") if chain else []
        truncations = ["_".join(subtags[:end]) for end in range(len(subtags) - 1, 0, -1)]
        found = dict.fromkeys(
            [self.by_text.get(spelling) for spelling in spellings]
            + [self.by_key.get(node) for node in chain]
            + [self.by_text.get(truncation) for truncation in truncations]
            + [member for node in chain for member in self.by_ancestor.get(node, ())],
        )
        excludes = dict.fromkeys(
            member for spelling in spellings for member in self.by_prefix.get(spelling, ())
        )
        return _Resolution(
            tuple(excludes),
            tuple(candidate for candidate in found if candidate is not None),
        )


class _DefaultAccessor:
    """``LocaleCatalog.default()`` builds the shipped catalog; ``catalog.default`` is its default.

    One name serves both because both readings are natural: on the class it is the
    default *catalog*, on an instance the default *language*.
    """

    @overload
    def __get__(
        self,
        instance: None,
        owner: type[LocaleCatalog],
    ) -> Callable[[], LocaleCatalog]: ...

    @overload
    def __get__(self, instance: LocaleCatalog, owner: type[LocaleCatalog]) -> Language: ...

    def __get__(
        self,
        instance: LocaleCatalog | None,
        owner: type[LocaleCatalog],
    ) -> Callable[[], LocaleCatalog] | Language:
        if instance is None:
            return owner.shipped
        return instance.default_language


def _check_identifiers(identifiers: object) -> tuple[tuple[str, ...], list[FieldError]]:
    """Canonicalise the host's identifiers; report unknown and duplicate ones."""
    if isinstance(identifiers, str | bytes) or not isinstance(identifiers, Iterable):
        error = FieldError(
            field="identifiers",
            code="identifiers.invalid",
            message="must be a sequence of locale identifiers such as ['en', 'pt_BR']",
        )
        return (), [error]
    canonical: list[str] = []
    unknown: list[str] = []
    duplicates: list[str] = []
    for value in identifiers:
        identifier = _canonical_locale(value)
        if identifier is None:
            unknown.append(repr(value)[:_MAX_IDENTIFIER_LENGTH])
        elif identifier in canonical:
            duplicates.append(identifier)
        else:
            canonical.append(identifier)
    errors: list[FieldError] = []
    if unknown:
        errors.append(
            FieldError(
                field="identifiers",
                code="identifiers.unknown",
                message=f"not CLDR locales known to Babel: {', '.join(unknown)}",
                params={"values": tuple(unknown)},
            ),
        )
    if duplicates:
        errors.append(
            FieldError(
                field="identifiers",
                code="identifiers.duplicate",
                message=f"listed more than once: {', '.join(duplicates)}",
                params={"values": tuple(duplicates)},
            ),
        )
    if not canonical and not errors:
        errors.append(
            FieldError(
                field="identifiers",
                code="identifiers.empty",
                message="a catalog needs at least one language",
            ),
        )
    return tuple(canonical), errors


def _canonical_locale(value: object) -> str | None:
    """The exact CLDR identifier Babel ships for ``value`` (any case, ``-`` or ``_``), or None.

    Unlike ``Locale.parse`` this never substitutes a different locale: ``und`` and
    ``en_ZZ`` are unknown here, not English.
    """
    if not (
        isinstance(value, str)
        and len(value) <= _MAX_IDENTIFIER_LENGTH
        and value.isascii()
        and _TAG.fullmatch(value)
    ):
        return None
    from babel import localedata  # noqa: PLC0415 - keep Babel out of package import

    normalized = localedata.normalize_locale(value.replace("-", "_"))
    if normalized is None or normalized == "root":
        return None
    return str(normalized)


def _load_language(identifier: str) -> Language:
    """Describe one CLDR locale (loads its data and its parents' through Babel)."""
    from babel import Locale  # noqa: PLC0415 - keep Babel out of package import

    locale = Locale.parse(identifier)
    native_name = locale.get_display_name(locale) or identifier
    english_name = locale.english_name or identifier
    direction: TextDirection = "rtl" if locale.text_direction == "rtl" else "ltr"
    return Language(
        identifier=identifier,
        tag=_to_tag(identifier),
        native_name=_menu_case(native_name),
        english_name=english_name,
        direction=direction,
    )


@attrs.frozen(init=False, repr=False)
class LocaleCatalog:
    """The UI languages a host supports, in menu order, with one default.

    Build it once per host (building reads CLDR data through Babel) and share it:
    it is immutable and safe to use from many threads.

    Args:
        identifiers: CLDR locale identifiers in menu order, in any case and with
            ``-`` or ``_`` (``["en", "pt-BR", "zh_Hant"]``). Each must be a locale
            Babel ships; the canonical spelling (``pt_BR``) is kept.
        default: The language used when nothing else applies (must be listed).

    Raises:
        ValidationError: With every problem at once: ``identifiers.invalid`` (not a
            sequence), ``identifiers.unknown``, ``identifiers.duplicate``,
            ``identifiers.empty``, ``default.unsupported``.

    Example:
        >>> catalog = LocaleCatalog(["en", "pt_BR", "zh_Hant"], default="en")
        >>> catalog.validate("pt-br")
        'pt_BR'
        >>> catalog.negotiate("zh-TW,zh;q=0.9,en;q=0.8")
        'zh_Hant'
        >>> catalog.default.native_name
        'English'
    """

    _languages: tuple[Language, ...]
    _default_language: Language
    _by_identifier: Mapping[str, Language] = attrs.field(eq=False)
    _matcher: _Matcher = attrs.field(eq=False)
    _header_cache: Callable[[str], str] = attrs.field(eq=False)
    _item_cache: Callable[[str], _Item | None] = attrs.field(eq=False)
    _range_cache: Callable[[str], _Resolution] = attrs.field(eq=False)

    default = _DefaultAccessor()

    def __init__(self, identifiers: Iterable[str], *, default: str = "en") -> None:
        canonical, errors = _check_identifiers(identifiers)
        default_identifier = _canonical_locale(default)
        if canonical and default_identifier not in canonical:
            errors.append(
                FieldError(
                    field="default",
                    code="default.unsupported",
                    message="the default must be one of the catalog's languages",
                    params={"supported": canonical},
                ),
            )
        if errors:
            raise ValidationError(errors)
        languages = tuple(_load_language(identifier) for identifier in canonical)
        by_identifier = {language.identifier: language for language in languages}
        matcher = _Matcher.build(canonical)
        self.__attrs_init__(
            languages=languages,
            default_language=by_identifier[str(default_identifier)],
            by_identifier=by_identifier,
            matcher=matcher,
            header_cache=functools.lru_cache(maxsize=_HEADER_CACHE_SIZE)(self._negotiate_text),
            item_cache=functools.lru_cache(maxsize=_ITEM_CACHE_SIZE)(self._parse_item),
            range_cache=functools.lru_cache(maxsize=_RANGE_CACHE_SIZE)(matcher.resolve),
        )

    @classmethod
    def shipped(cls) -> LocaleCatalog:
        """Build the catalog of :data:`DEFAULT_LANGUAGES`, default English.

        Also reachable as ``LocaleCatalog.default()``.

        Returns:
            A catalog of 18 widely used UI languages, both directions included.
        """
        return cls(DEFAULT_LANGUAGES, default="en")

    def __repr__(self) -> str:
        identifiers = [language.identifier for language in self._languages]
        return f"LocaleCatalog({identifiers!r}, default={self._default_language.identifier!r})"

    @property
    def languages(self) -> tuple[Language, ...]:
        """Every supported language, in catalog (menu) order."""
        return self._languages

    @property
    def identifiers(self) -> tuple[str, ...]:
        """The canonical identifiers of every supported language, in catalog order."""
        return tuple(language.identifier for language in self._languages)

    @property
    def default_language(self) -> Language:
        """The language used when nothing else applies (same as ``catalog.default``)."""
        return self._default_language

    def get(self, identifier: object) -> Language | None:
        """Look a language up by identifier, in any case and with ``-`` or ``_``.

        Args:
            identifier: ``"pt_BR"``, ``"pt-br"``...

        Returns:
            The language, or ``None`` when the catalog does not support it.
        """
        canonical = self._lookup(identifier)
        return None if canonical is None else self._by_identifier[canonical]

    def __contains__(self, identifier: object) -> bool:
        return self._lookup(identifier) is not None

    def __iter__(self) -> Iterator[Language]:
        return iter(self._languages)

    def __len__(self) -> int:
        return len(self._languages)

    def _lookup(self, value: object) -> str | None:
        """The canonical identifier spelled by ``value``, or None (never raises)."""
        if isinstance(value, str) and len(value) <= _MAX_IDENTIFIER_LENGTH and value.isascii():
            return self._matcher.by_text.get(_normalize(value))
        return None

    def validate(self, value: object, *, field: str = "language") -> str:
        """Check a user's language setting against the catalog.

        Only the catalog's own identifiers are accepted, in any case and with ``-`` or
        ``_`` (``"pt-br"``, ``"PT_BR"``, ``"zh-hans"``). Nothing is guessed: ``"pt"``
        is not ``pt_BR``, ``"und"`` and ``"en_ZZ"`` are not English.

        Args:
            value: What the user (or a form) sent; any object.
            field: The field name used in the error (and its codes).

        Returns:
            The canonical identifier (``"pt_BR"``); validating it again returns it unchanged.

        Raises:
            ValidationError: ``<field>.invalid`` when ``value`` is not a string shaped
                like a language tag, ``<field>.unsupported`` when it is one the catalog
                does not offer. Both carry ``params["supported"]``.
        """
        canonical = self._lookup(value)
        if canonical is not None:
            return canonical
        supported = self.identifiers
        if not isinstance(value, str):
            raise ValidationError.single(
                field,
                "invalid",
                f"must be a language identifier string, not {type(value).__name__}",
                supported=supported,
            )
        if len(value) > _MAX_IDENTIFIER_LENGTH or not value.isascii() or not _TAG.fullmatch(value):
            raise ValidationError.single(
                field,
                "invalid",
                "must be a language identifier such as 'pt_BR'",
                supported=supported,
            )
        raise ValidationError.single(
            field,
            "unsupported",
            f"{value!r} is not one of the supported languages",
            value=value,
            supported=supported,
        )

    def negotiate(self, accept_language: str | None) -> str:
        """Pick the supported language that best fits an HTTP ``Accept-Language`` header.

        Ranges are tried by descending ``q`` (header order among equal ``q``). For each
        range the candidates are, in order: the exact identifier (any case, ``-``/``_``);
        the same after replacing a deprecated code (``iw`` -> ``he``, ``in`` -> ``id``,
        ``ji`` -> ``yi``, ``sh`` -> ``sr_Latn``); the CLDR parent chain of the range with
        likely subtags filled in, which also sends Chinese regions to the right script
        (``zh-TW``/``zh-HK`` -> ``zh_Hant``, ``zh``/``zh-CN``/``zh-SG`` -> ``zh_Hans``) and
        honours parent exceptions (``es-MX`` -> ``es_419`` -> ``es``, ``no``/``nb``/``nn``);
        RFC 4647 truncation of the range as written (``sr-Latn`` -> ``sr``); and last other
        regional variants of the same language (``pt-PT`` -> ``pt_BR``). The first range
        with a candidate wins; otherwise the catalog default is returned.

        Robustness rules: only the first :data:`MAX_HEADER_LENGTH` characters (cut at a
        comma) and :data:`MAX_HEADER_ITEMS` items are read; items that are not a language
        range are skipped; ``q=0`` means "not these languages": the catalog entries the
        range covers by RFC 4647 basic filtering (``pt;q=0`` covers ``pt_BR``; a
        deprecated code covers its replacement) are never picked through another range
        (``*`` excepted, see below); a malformed ``q`` (``q=abc``,
        ``q=2``, four decimals) keeps the item but ranks it after every well-formed one,
        since the client did name the language but an unreadable weight must not
        outrank a readable one; ``*`` stands for the catalog default at its rank
        (``*;q=0`` is ignored). The catalog default is the last resort even if excluded
        with ``q=0``: the answer is always a catalog language.

        Args:
            accept_language: The raw header value, or ``None`` when absent. Any other
                value is treated as absent.

        Returns:
            The identifier of a language in this catalog. Never raises.
        """
        if not isinstance(accept_language, str) or not accept_language:
            return self._default_language.identifier
        if len(accept_language) <= _CACHEABLE_HEADER_LENGTH:
            return self._header_cache(accept_language)
        return self._negotiate_text(accept_language)

    def _negotiate_text(self, header: str) -> str:
        """Negotiate without the header cache (the header is a non-empty string)."""
        if len(header) > MAX_HEADER_LENGTH:
            cut = header.rfind(",", 0, MAX_HEADER_LENGTH + 1)
            header = header[:cut] if cut > 0 else ""
        ranked: list[tuple[int, int, _Resolution]] = []
        excluded: set[str] = set()
        for index, item in enumerate(header.split(",", MAX_HEADER_ITEMS)[:MAX_HEADER_ITEMS]):
            if len(item) <= _CACHEABLE_ITEM_LENGTH:
                parsed = self._item_cache(item)
            else:
                parsed = self._parse_item(item)
            if parsed is None:
                continue
            weight, resolution = parsed
            if weight == 0:
                excluded.update(resolution.excludes)
            else:
                ranked.append((-weight, index, resolution))
        ranked.sort(key=_rank)
        for _, _, resolution in ranked:
            for candidate in resolution.candidates:
                if candidate not in excluded:
                    return candidate
        return self._default_language.identifier

    def _parse_item(self, item: str) -> _Item | None:
        """Read one header item (``"pt-BR;q=0.9"``); ``None`` when it is not a language range."""
        language_range, _, parameters = item.partition(";")
        language_range = language_range.strip(_OWS)
        if language_range == _WILDCARD:
            default = self._default_language.identifier
            resolution = _Resolution((), (default,))
        elif language_range.isascii() and _TAG.fullmatch(language_range):
            resolution = self._range_cache(_normalize(language_range))
        else:
            return None
        return _Item(_weight(parameters), resolution)


def _rank(entry: tuple[int, int, Any]) -> tuple[int, int]:
    """Sort key: heavier first, then header order."""
    return entry[0], entry[1]


def _weight(parameters: str) -> int:
    """The item's ``q`` in thousandths: 1000 if absent, -1 if malformed."""
    if not parameters:
        return _FULL_WEIGHT
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip(_OWS).lower() != "q":
            continue
        value = value.strip(_OWS)
        if _QVALUE.fullmatch(value) is None:
            return _MALFORMED_WEIGHT
        if value[0] == "1":
            return _FULL_WEIGHT
        return int((value[2:] + "000")[:3])
    return _FULL_WEIGHT
