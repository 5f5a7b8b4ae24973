from __future__ import annotations

import base64
import re
import threading
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._random import SeededRandom
from enspace_profile._security.passwords import (
    Argon2idHasher,
    DjangoPbkdf2Hasher,
    PasswordHash,
    PasswordHasher,
    PhcHash,
    ScryptHasher,
    argon2id_available,
    format_phc,
    normalize_password,
    parse_phc,
)
from enspace_profile.exceptions import ValidationError

# Cheap parameters keep the suite fast; one test per hasher uses the defaults.
CHEAP_ARGON2 = {"memory_cost": 1024, "iterations": 1}
CHEAP_SCRYPT = {"log2_n": 4}
CHEAP_DJANGO = {"iterations": 1000}

# Django's own test vector (django/tests/auth_tests/test_hashers.py).
DJANGO_LETMEIN = "pbkdf2_sha256$20000$seasalt$oBSd886ysm3AqYun62DOdin8YcfbU1z9cksZSuLP9r0="

# RFC 7914, section 12, third vector: scrypt("pleaseletmein", "SodiumChloride",
# N=16384, r=8, p=1, dkLen=64).
RFC7914_DIGEST = bytes.fromhex(
    "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
    "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"
)
PEPPER = b"0123456789abcdef0123456789abcdef"

needs_argon2id = pytest.mark.skipif(
    not argon2id_available(), reason="cryptography without Argon2id support"
)


def cheap_argon2(seed: int = 0, **overrides: int) -> Argon2idHasher:
    return Argon2idHasher(random=SeededRandom(seed), **{**CHEAP_ARGON2, **overrides})


def cheap_scrypt(seed: int = 0, **overrides: int) -> ScryptHasher:
    return ScryptHasher(random=SeededRandom(seed), **{**CHEAP_SCRYPT, **overrides})


def cheap_django(seed: int = 0, **overrides: int) -> DjangoPbkdf2Hasher:
    return DjangoPbkdf2Hasher(random=SeededRandom(seed), **{**CHEAP_DJANGO, **overrides})


def codes(error: pytest.ExceptionInfo[ValidationError]) -> tuple[str, ...]:
    return error.value.codes


def parse_or_error(text: str) -> PhcHash | ValidationError:
    try:
        return parse_phc(text)
    except ValidationError as error:
        return error


def retouch_digest(hashed: str) -> str:
    """Return ``hashed`` with one bit of its digest flipped (still well-formed)."""
    head, _, digest = hashed.rpartition("$")
    raw = bytearray(base64.b64decode(digest + "=" * (-len(digest) % 4)))
    raw[0] ^= 0x01
    padded = base64.b64encode(bytes(raw)).decode()
    return f"{head}${padded if head.startswith('pbkdf2') else padded.rstrip('=')}"


class TestNormalizePassword:
    @pytest.mark.parametrize(
        ("typed", "normalised"),
        [
            ("plain ascii", "plain ascii"),
            ("cafe\u0301", "caf\u00e9"),  # combining accent composes
            ("\uff50\uff41\uff53\uff53", "pass"),  # full-width letters
            ("\ufb01sh", "fish"),  # ligature
            ("\u00a0nbsp", " nbsp"),  # no-break space is a space
            ("emoji \U0001f600", "emoji \U0001f600"),
        ],
    )
    def test_table(self, typed, normalised):
        """Passwords are compared in NFKC, so equivalent spellings are one password."""
        assert normalize_password(typed) == normalised

    @settings(max_examples=200)
    @given(st.text())
    def test_idempotent(self, text):
        """Normalising twice gives the same result as once."""
        once = normalize_password(text)
        assert normalize_password(once) == once
        assert unicodedata.is_normalized("NFKC", once)


class TestParsePhc:
    def test_parses_argon2id(self):
        """An Argon2id string splits into id, version, ordered params, salt and hash."""
        phc = parse_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g")
        assert phc.id == "argon2id"
        assert phc.version == 19
        assert list(phc.params.items()) == [("m", "19456"), ("t", "2"), ("p", "1")]
        assert phc.salt == b"saltsalt"
        assert phc.hash == b"hashhash"

    def test_parses_without_version_and_params(self):
        """Version and parameters are optional."""
        phc = parse_phc("$x$c2FsdA$aGFzaA")
        assert (phc.id, phc.version, phc.params) == ("x", None, {})

    def test_repr_hides_salt_and_digest(self):
        """The repr shows the parameters but not the salt or the digest."""
        text = repr(parse_phc("$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"))
        assert "ln" in text
        assert "saltsalt" not in text
        assert "hashhash" not in text

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "$",
            "argon2id$v=19$m=1$c2FsdA$aGFzaA",  # no leading $
            "$argon2id$c2FsdA",  # no hash
            "$ARGON$c2FsdA$aGFzaA",  # upper-case id
            "$argon2id$m=1$t=2$c2FsdA$aGFzaA",  # two parameter segments
            "$argon2id$m=1,m=2$c2FsdA$aGFzaA",  # repeated parameter
            "$argon2id$m$c2FsdA$aGFzaA",  # parameter without value
            "$argon2id$m=$c2FsdA$aGFzaA",  # empty value
            "$argon2id$m=1,$c2FsdA$aGFzaA",  # trailing comma
            "$argon2id$m=1$c2FsdA==$aGFzaA",  # padding
            "$argon2id$m=1$c2FsdB$aGFzaA",  # non-canonical base64 (low bits set)
            "$argon2id$m=1$c2FsdA$a",  # impossible base64 length
            "$argon2id$m=1$c2F-dA$aGFzaA",  # URL-safe alphabet
            "$argon2id$m=1$$aGFzaA",  # empty salt
            "$argon2id$m=1$c2FsdA$aGFzaA$",  # trailing $
            "$argon2id$m=1$c2FsdA$" + "A" * 5000,  # too long
        ],
    )
    def test_malformed(self, text):
        """Anything that is not a complete, canonical PHC string is refused."""
        with pytest.raises(ValidationError) as error:
            parse_phc(text)
        assert codes(error) == ("password_hash.malformed",)
        assert error.value.fields == ("password_hash",)

    @pytest.mark.parametrize("value", [None, 42, b"$x$c2FsdA$aGFzaA"])
    def test_not_text(self, value):
        """Non-text input is malformed, not a crash."""
        with pytest.raises(ValidationError) as error:
            parse_phc(value)
        assert codes(error) == ("password_hash.malformed",)

    @settings(max_examples=200)
    @given(st.text())
    def test_arbitrary_text_only_raises_validation_error(self, text):
        """Any text either parses or raises ValidationError, never another exception."""
        result = parse_or_error(text)
        if isinstance(result, ValidationError):
            assert result.codes == ("password_hash.malformed",)
        else:
            assert format_phc(result) == text

    @settings(max_examples=200)
    @given(st.text(alphabet="$=,v0123456789abcmptAZ+/-.", max_size=40))
    def test_phc_like_text_only_raises_validation_error(self, text):
        """Text made of PHC punctuation reaches deep into the parser without escaping errors."""
        result = parse_or_error(text)
        if isinstance(result, ValidationError):
            assert result.codes == ("password_hash.malformed",)
        else:
            assert format_phc(result) == text

    @settings(max_examples=200)
    @given(
        algorithm=st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True),
        version=st.none() | st.integers(min_value=0, max_value=10**9 - 1),
        params=st.dictionaries(
            st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True).filter(lambda n: n != "v"),
            st.from_regex(r"[a-zA-Z0-9/+.-]{1,16}", fullmatch=True),
            max_size=4,
        ),
        salt=st.binary(min_size=2, max_size=64),
        digest=st.binary(min_size=2, max_size=64),
    )
    def test_round_trip(self, algorithm, version, params, salt, digest):
        """Formatting valid parts and parsing them back gives the same string and parts."""
        phc = PhcHash(id=algorithm, version=version, params=params, salt=salt, hash=digest)
        text = format_phc(phc)
        assert parse_phc(text) == phc
        assert format_phc(parse_phc(text)) == text

    def test_constructor_refuses_unformattable_parts(self):
        """PhcHash cannot hold parts that would not format to a parseable string."""
        with pytest.raises(ValidationError):
            PhcHash(id="Bad Id", salt=b"s", hash=b"h")
        with pytest.raises(ValidationError):
            PhcHash(id="x", params={"m": "a,b"}, salt=b"s", hash=b"h")
        with pytest.raises(ValidationError):
            PhcHash(id="x", salt=b"", hash=b"h")

    @pytest.mark.parametrize(
        ("value", "code"),
        [
            ("7", None),
            ("0", None),
            ("007", "password_hash.malformed"),
            ("-1", "password_hash.malformed"),
            ("x", "password_hash.malformed"),
            ("11", "password_hash.unsupported"),
        ],
    )
    def test_int_param(self, value, code):
        """Integer parameters must be plain decimals within the hasher's limits."""
        phc = PhcHash(id="x", params={"n": value}, salt=b"s", hash=b"h")
        if code is None:
            assert phc.int_param("n", minimum=0, maximum=10) == int(value)
        else:
            with pytest.raises(ValidationError) as error:
                phc.int_param("n", minimum=0, maximum=10)
            assert codes(error) == (code,)

    def test_int_param_missing(self):
        """A missing integer parameter is malformed."""
        phc = PhcHash(id="x", salt=b"s", hash=b"h")
        with pytest.raises(ValidationError) as error:
            phc.int_param("n", minimum=0, maximum=10)
        assert codes(error) == ("password_hash.malformed",)


@needs_argon2id
class TestArgon2idHasher:
    def test_default_parameters(self):
        """The defaults are OWASP's Argon2id minimum and produce a standard PHC string."""
        hasher = Argon2idHasher()
        hashed = hasher.hash("correct horse battery staple")
        assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        phc = parse_phc(hashed)
        assert (len(phc.salt), len(phc.hash)) == (16, 32)
        assert hasher.verify("correct horse battery staple", hashed)
        assert not hasher.needs_rehash(hashed)

    def test_round_trip(self):
        """A password verifies against its own hash and a different one does not."""
        hasher = cheap_argon2()
        hashed = hasher.hash("s3cret words")
        assert hasher.verify("s3cret words", hashed)
        assert not hasher.verify("s3cret wordz", hashed)

    def test_satisfies_protocol(self):
        """The hasher is a PasswordHasher."""
        hasher: PasswordHasher = cheap_argon2()
        assert hasher.identify(hasher.hash("x"))

    def test_fresh_salt_per_hash(self):
        """Hashing the same password twice gives different strings."""
        hasher = cheap_argon2()
        assert hasher.hash("same") != hasher.hash("same")

    def test_injected_randomness_is_deterministic(self):
        """With a seeded random source the salt, and so the hash, is reproducible."""
        assert cheap_argon2(seed=7).hash("same") == cheap_argon2(seed=7).hash("same")

    def test_verifies_hashes_from_cryptography_phc_encoder(self):
        """Hashes written by cryptography's own PHC encoder verify (interoperability)."""
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        kdf = Argon2id(salt=b"0123456789abcdef", length=32, iterations=1, lanes=2, memory_cost=64)
        encoded = kdf.derive_phc_encoded(b"interop")
        assert Argon2idHasher().verify("interop", encoded)
        assert not Argon2idHasher().verify("interoq", encoded)

    def test_hashes_verify_with_cryptography_phc_verifier(self):
        """Our strings are read by cryptography's PHC verifier (interoperability)."""
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        Argon2id.verify_phc_encoded(b"interop", cheap_argon2().hash("interop"))

    @pytest.mark.parametrize(
        ("overrides", "expected"),
        [
            ({}, False),
            ({"memory_cost": 2048}, True),
            ({"iterations": 2}, True),
            ({"lanes": 2}, True),
            ({"salt_length": 32}, True),
            ({"hash_length": 64}, True),
        ],
    )
    def test_needs_rehash(self, overrides, expected):
        """A hash needs rehashing exactly when any parameter or length differs."""
        hashed = cheap_argon2().hash("pw")
        assert cheap_argon2(**overrides).needs_rehash(hashed) is expected

    def test_tampered_digest_does_not_verify(self):
        """Changing one bit of the stored digest makes verification fail."""
        hasher = cheap_argon2()
        hashed = hasher.hash("pw")
        assert not hasher.verify("pw", retouch_digest(hashed))

    def test_changed_parameters_do_not_verify(self):
        """A hash whose parameters were edited no longer verifies."""
        hasher = cheap_argon2()
        hashed = hasher.hash("pw")
        assert not hasher.verify("pw", hashed.replace("t=1", "t=2"))

    @pytest.mark.parametrize(
        ("hashed", "code"),
        [
            ("$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43, "password_hash.unsupported"),
            ("$argon2id$m=64,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43, "password_hash.unsupported"),
            (
                "$argon2id$v=19$m=64,t=1,p=1,keyid=AA$c2FsdHNhbHQ$" + "A" * 43,
                "password_hash.unsupported",
            ),
            (
                "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43,
                "password_hash.unsupported",
            ),
            ("$argon2id$v=19$m=64,t=999,p=1$c2FsdHNhbHQ$" + "A" * 43, "password_hash.unsupported"),
            ("$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHQ$" + "A" * 43, "password_hash.malformed"),
            ("$argon2id$v=19$m=4,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43, "password_hash.malformed"),
            ("$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + "A" * 43, "password_hash.unsupported"),
            ("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$AAAA", "password_hash.unsupported"),
            ("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ", "password_hash.malformed"),
            ("$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$" + "A" * 43, "password_hash.unknown_format"),
        ],
    )
    def test_refuses_unusable_hashes(self, hashed, code):
        """Hashes it cannot or will not compute (DoS-sized parameters) raise a typed error."""
        with pytest.raises(ValidationError) as error:
            cheap_argon2().verify("pw", hashed)
        assert codes(error) == (code,)

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"memory_cost": 4}, "memory_cost"),
            ({"memory_cost": 8, "lanes": 2}, "memory_cost"),
            ({"iterations": 0}, "iterations"),
            ({"salt_length": 4}, "salt_length"),
            ({"hash_length": 8}, "hash_length"),
        ],
    )
    def test_refuses_weak_configuration(self, overrides, field):
        """Parameters Argon2 cannot use are refused when the hasher is built."""
        with pytest.raises(ValidationError) as error:
            Argon2idHasher(**overrides)
        assert error.value.fields == (field,)

    @pytest.mark.parametrize(
        ("hashed", "expected"),
        [("$argon2id$v=19$...", True), ("$argon2i$v=19$...", False), ("pbkdf2_sha256$1$", False)],
    )
    def test_identify(self, hashed, expected):
        """Only $argon2id$ strings are identified."""
        assert cheap_argon2().identify(hashed) is expected


class TestScryptHasher:
    def test_default_parameters(self):
        """The defaults are OWASP's scrypt parameters, written as ln=17,r=8,p=1."""
        hasher = ScryptHasher()
        assert (hasher.log2_n, hasher.block_size, hasher.parallelism) == (17, 8, 1)
        stored = format_phc(
            PhcHash(
                id="scrypt",
                params={"ln": "17", "r": "8", "p": "1"},
                salt=bytes(16),
                hash=bytes(32),
            )
        )
        assert stored.startswith("$scrypt$ln=17,r=8,p=1$")
        assert not hasher.needs_rehash(stored)

    def test_known_answer_rfc7914(self):
        """The RFC 7914 test vector verifies."""
        stored = format_phc(
            PhcHash(
                id="scrypt",
                params={"ln": "14", "r": "8", "p": "1"},
                salt=b"SodiumChloride",
                hash=RFC7914_DIGEST,
            )
        )
        assert ScryptHasher().verify("pleaseletmein", stored)
        assert not ScryptHasher().verify("pleaseletmeout", stored)

    def test_round_trip(self):
        """A password verifies against its own hash and a different one does not."""
        hasher = cheap_scrypt()
        hashed = hasher.hash("s3cret words")
        assert re.fullmatch(r"\$scrypt\$ln=4,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}", hashed)
        assert hasher.verify("s3cret words", hashed)
        assert not hasher.verify("s3cret wordz", hashed)

    @pytest.mark.parametrize(
        ("overrides", "expected"),
        [({}, False), ({"log2_n": 5}, True), ({"block_size": 4}, True), ({"parallelism": 2}, True)],
    )
    def test_needs_rehash(self, overrides, expected):
        """A hash needs rehashing exactly when a parameter differs."""
        hashed = cheap_scrypt().hash("pw")
        assert cheap_scrypt(**overrides).needs_rehash(hashed) is expected

    def test_tampered_digest_does_not_verify(self):
        """Changing one bit of the stored digest makes verification fail."""
        hasher = cheap_scrypt()
        assert not hasher.verify("pw", retouch_digest(hasher.hash("pw")))

    @pytest.mark.parametrize(
        ("hashed", "code"),
        [
            ("$scrypt$ln=30,r=8,p=1$c2FsdHNhbHQ$" + "A" * 43, "password_hash.unsupported"),
            ("$scrypt$ln=4,r=8$c2FsdHNhbHQ$" + "A" * 43, "password_hash.unsupported"),
            ("$scrypt$v=1$ln=4,r=8,p=1$c2FsdHNhbHQ$" + "A" * 43, "password_hash.unsupported"),
            ("$scrypt$ln=0,r=8,p=1$c2FsdHNhbHQ$" + "A" * 43, "password_hash.malformed"),
            ("$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$", "password_hash.malformed"),
        ],
    )
    def test_refuses_unusable_hashes(self, hashed, code):
        """Malformed hashes and ones needing more than 2 GiB raise a typed error."""
        with pytest.raises(ValidationError) as error:
            cheap_scrypt().verify("pw", hashed)
        assert codes(error) == (code,)

    def test_refuses_oversized_configuration(self):
        """A configuration needing more than 2 GiB per hash is refused when built."""
        with pytest.raises(ValidationError) as error:
            ScryptHasher(log2_n=24, block_size=16)
        assert error.value.fields == ("log2_n",)


class TestDjangoPbkdf2Hasher:
    def test_known_answer_from_django(self):
        """A hash made by Django's make_password verifies."""
        assert DjangoPbkdf2Hasher().verify("l\u00e8tmein", DJANGO_LETMEIN)
        assert not DjangoPbkdf2Hasher().verify("letmein", DJANGO_LETMEIN)

    def test_produces_django_format(self):
        """New hashes have Django's layout: iterations, 22-character salt, padded base64."""
        hashed = cheap_django().hash("pw")
        assert re.fullmatch(r"pbkdf2_sha256\$1000\$[A-Za-z0-9]{22}\$[A-Za-z0-9+/]{43}=", hashed)
        assert cheap_django().verify("pw", hashed)
        assert not cheap_django().verify("pW", hashed)

    def test_default_iterations(self):
        """New hashes use Django 5.2's iteration count by default."""
        assert DjangoPbkdf2Hasher().iterations == 1_000_000
        assert DjangoPbkdf2Hasher().needs_rehash(DJANGO_LETMEIN)

    @pytest.mark.parametrize(("iterations", "expected"), [(20000, False), (30000, True)])
    def test_needs_rehash(self, iterations, expected):
        """A hash needs rehashing when its iteration count differs."""
        assert DjangoPbkdf2Hasher(iterations=iterations).needs_rehash(DJANGO_LETMEIN) is expected

    def test_tampered_digest_does_not_verify(self):
        """Changing one bit of the stored digest makes verification fail."""
        assert not cheap_django().verify("l\u00e8tmein", retouch_digest(DJANGO_LETMEIN))

    @pytest.mark.parametrize(
        ("hashed", "code"),
        [
            ("pbkdf2_sha256$20000$seasalt", "password_hash.malformed"),
            ("pbkdf2_sha256$x$seasalt$oBSd886ysm3AqYun62DOdin8YcfbU1z9cksZSuLP9r0=", None),
            ("pbkdf2_sha256$0$seasalt$oBSd886ysm3AqYun62DOdin8YcfbU1z9cksZSuLP9r0=", None),
            ("pbkdf2_sha256$20000$$oBSd886ysm3AqYun62DOdin8YcfbU1z9cksZSuLP9r0=", None),
            ("pbkdf2_sha256$20000$seasalt$oBSd886ysm3AqYun62DOdin8YcfbU1z9cksZSuLP9r0", None),
            ("pbkdf2_sha256$20000$seasalt$b0JTZDg4Nnlz", None),  # wrong digest length
            ("pbkdf2_sha256$20000$seasalt$\u00e9BSd886ysm3AqYun62DOdin8YcfbU1z9cksZSuLP9r0=", None),
            (
                "pbkdf2_sha256$99999999$seasalt$oBSd886ysm3AqYun62DOdin8YcfbU1z9cksZSuLP9r0=",
                "password_hash.unsupported",
            ),
            ("pbkdf2_sha1$20000$seasalt$oBSd886ysm3AqYun62DOdin8YcfbU1z9=", "unknown"),
        ],
    )
    def test_refuses_unusable_hashes(self, hashed, code):
        """Malformed Django hashes raise a typed error instead of crashing."""
        expected = {None: "password_hash.malformed", "unknown": "password_hash.unknown_format"}
        with pytest.raises(ValidationError) as error:
            cheap_django().verify("pw", hashed)
        assert codes(error) == (expected.get(code, code),)


@needs_argon2id
class TestPasswordHash:
    def make(self, **options) -> PasswordHash:
        return PasswordHash(
            [cheap_argon2(), cheap_scrypt()],
            imported=[cheap_django()],
            **options,
        )

    def test_hash_uses_current_hasher(self):
        """New hashes are made by the first hasher and verify."""
        front = self.make()
        hashed = front.hash("correct horse battery staple")
        assert hashed.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
        assert front.verify("correct horse battery staple", hashed)
        assert not front.verify("correct horse battery stapler", hashed)

    def test_verify_and_update_current_hash(self):
        """A current hash verifies without producing a replacement."""
        front = self.make()
        hashed = front.hash("pw")
        assert front.verify_and_update("pw", hashed) == (True, None)
        assert not front.needs_rehash(hashed)

    def test_verify_and_update_wrong_password(self):
        """A wrong password gives (False, None), whatever the hash's age."""
        front = self.make()
        assert front.verify_and_update("nope", front.hash("pw")) == (False, None)
        assert front.verify_and_update("nope", DJANGO_LETMEIN) == (False, None)

    def test_upgrades_imported_django_hash(self):
        """A Django hash verifies and is replaced by an Argon2id hash of the same password."""
        front = self.make()
        ok, new_hash = front.verify_and_update("l\u00e8tmein", DJANGO_LETMEIN)
        assert ok
        assert new_hash is not None
        assert new_hash.startswith("$argon2id$")
        assert front.verify("l\u00e8tmein", new_hash)
        assert front.verify_and_update("l\u00e8tmein", new_hash) == (True, None)

    def test_upgrades_non_current_hasher(self):
        """A hash from a verify-only hasher in the list is upgraded to the current one."""
        front = self.make()
        old = cheap_scrypt(seed=3).hash("pw")
        assert front.needs_rehash(old)
        ok, new_hash = front.verify_and_update("pw", old)
        assert ok
        assert new_hash is not None
        assert new_hash.startswith("$argon2id$")

    def test_upgrades_outdated_parameters(self):
        """A hash of the current kind with older parameters is upgraded."""
        old = PasswordHash([cheap_argon2(memory_cost=512)]).hash("pw")
        ok, new_hash = self.make().verify_and_update("pw", old)
        assert ok
        assert new_hash is not None
        assert "m=1024" in new_hash

    def test_django_hasher_in_main_list_is_upgraded(self):
        """A Django hasher listed as verify-only (not imported) is also upgraded."""
        front = PasswordHash([cheap_argon2(), cheap_django()])
        django_hash = cheap_django(seed=5).hash("pw")
        ok, new_hash = front.verify_and_update("pw", django_hash)
        assert ok
        assert new_hash is not None
        assert new_hash.startswith("$argon2id$")

    @pytest.mark.parametrize(
        ("stored", "typed"),
        [
            ("caf\u00e9 au lait", "cafe\u0301 au lait"),
            ("\uff50\uff41\uff53\uff53word", "password"),
            ("\ufb01sh and chips", "fish and chips"),
        ],
    )
    def test_normalises_before_hashing(self, stored, typed):
        """Equivalent spellings of a password (NFKC) verify against each other."""
        front = self.make()
        assert front.verify(typed, front.hash(stored))
        assert front.verify(stored, front.hash(typed))

    def test_imported_hashes_use_password_as_typed(self):
        """Imported hashes are checked against the raw password, then upgraded normalised."""
        legacy = cheap_django(seed=9).hash("\ufb01sh")  # made by a system without NFKC
        front = self.make(pepper=PEPPER)
        assert not front.verify("fish", legacy)
        ok, new_hash = front.verify_and_update("\ufb01sh", legacy)
        assert ok
        assert new_hash is not None
        assert front.verify("fish", new_hash)

    def test_pepper_changes_the_hash(self):
        """With the same salt, a peppered hash differs from an unpeppered one."""
        plain = PasswordHash([cheap_argon2(seed=1)]).hash("pw")
        peppered = PasswordHash([cheap_argon2(seed=1)], pepper=PEPPER).hash("pw")
        assert plain.rsplit("$", 1)[0] == peppered.rsplit("$", 1)[0]  # same salt
        assert plain != peppered

    def test_pepper_is_needed_to_verify(self):
        """A peppered hash verifies only with the same pepper."""
        peppered = PasswordHash([cheap_argon2()], pepper=PEPPER)
        hashed = peppered.hash("pw")
        assert peppered.verify("pw", hashed)
        assert not PasswordHash([cheap_argon2()]).verify("pw", hashed)
        assert not PasswordHash([cheap_argon2()], pepper=b"x" * 32).verify("pw", hashed)

    def test_pepper_is_hmac_sha256_before_the_kdf(self):
        """The documented pepper construction is what reaches the hasher."""
        import hashlib
        import hmac

        hashed = PasswordHash([cheap_argon2()], pepper=PEPPER).hash("caf\u00e9")
        mac = hmac.new(PEPPER, "caf\u00e9".encode(), hashlib.sha256).digest()
        assert cheap_argon2().verify(base64.b64encode(mac).decode(), hashed)

    def test_pepper_never_shown(self):
        """The pepper does not appear in the repr."""
        text = repr(PasswordHash([cheap_argon2()], pepper=PEPPER))
        assert PEPPER.decode() not in text
        assert "pepper=<set>" in text

    def test_pepper_too_short(self):
        """A pepper shorter than 16 bytes is refused."""
        with pytest.raises(ValidationError) as error:
            PasswordHash([cheap_argon2()], pepper=b"short")
        assert codes(error) == ("pepper.too_short",)

    def test_tampered_hash_is_false(self):
        """A stored hash with a changed digest does not verify."""
        front = self.make()
        assert not front.verify("pw", retouch_digest(front.hash("pw")))

    @pytest.mark.parametrize("hashed", ["$bcrypt$xyz", "plaintext", "", None, 12])
    def test_unknown_format_raises(self, hashed):
        """A hash no hasher knows is a data error, not a wrong password."""
        with pytest.raises(ValidationError) as error:
            self.make().verify("hunter2-secret", hashed)
        assert codes(error) == ("password_hash.unknown_format",)
        assert "hunter2-secret" not in str(error.value)

    def test_malformed_known_format_raises(self):
        """A broken hash of a known kind raises password_hash.malformed."""
        with pytest.raises(ValidationError) as error:
            self.make().verify_and_update("pw", "$argon2id$v=19$m=1024,t=1,p=1$bad")
        assert codes(error) == ("password_hash.malformed",)

    @pytest.mark.parametrize("password", [None, b"pw", 5])
    def test_password_must_be_text(self, password):
        """A password that is not text is refused with password.invalid."""
        front = self.make()
        with pytest.raises(ValidationError) as error:
            front.hash(password)
        assert codes(error) == ("password.invalid",)
        with pytest.raises(ValidationError):
            front.verify(password, DJANGO_LETMEIN)

    def test_lone_surrogate_does_not_crash(self):
        """A lone surrogate hashes and verifies instead of raising UnicodeError."""
        front = self.make()
        assert front.verify("a\ud800b", front.hash("a\ud800b"))

    @pytest.mark.parametrize(
        ("options", "field"),
        [({"max_concurrent": 0}, "max_concurrent"), ({"max_concurrent": True}, "max_concurrent")],
    )
    def test_refuses_bad_options(self, options, field):
        """Options out of range are refused when the front object is built."""
        with pytest.raises(ValidationError) as error:
            PasswordHash([cheap_argon2()], **options)
        assert error.value.fields == (field,)

    def test_refuses_no_hashers(self):
        """At least one hasher is needed."""
        with pytest.raises(ValidationError) as error:
            PasswordHash([])
        assert codes(error) == ("hashers.empty",)

    def test_recommended(self):
        """recommended() makes OWASP Argon2id hashes and still verifies scrypt ones."""
        front = PasswordHash.recommended(random=SeededRandom(1))
        assert front.current == Argon2idHasher()
        assert any(isinstance(h, ScryptHasher) for h in front.hashers[1:])
        assert front.max_concurrent == 2
        assert front.pepper is None

    def test_caps_concurrent_hashes(self):
        """No more than max_concurrent hashes run at once; the others wait their turn."""
        lock = threading.Lock()
        two_inside = threading.Event()
        state = {"active": 0, "peak": 0, "calls": 0}

        class SlowHasher:
            def identify(self, hashed: str, /) -> bool:
                return True

            def hash(self, password: str, /) -> str:
                with lock:
                    state["active"] += 1
                    state["calls"] += 1
                    state["peak"] = max(state["peak"], state["active"])
                    if state["active"] == 2:
                        two_inside.set()
                two_inside.wait(timeout=10)  # the first caller waits for a second one
                with lock:
                    state["active"] -= 1
                return "$slow$c2FsdA$aGFzaA"

            def verify(self, password: str, hashed: str, /) -> bool:
                return True

            def needs_rehash(self, hashed: str, /) -> bool:
                return False

        front = PasswordHash([SlowHasher()], max_concurrent=2)
        threads = [threading.Thread(target=front.hash, args=("pw",)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert state["calls"] == 6
        assert state["peak"] == 2
