from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._random import SeededRandom
from enspace_profile._tokens.format import DEFAULT_TOKEN_FORMAT
from enspace_profile._tokens.hashing import Pepper, TokenHasher, digests_equal
from enspace_profile.exceptions import NotFoundError, ValidationError

OLD = Pepper(id="2025", secret=b"o" * 32)
NEW = Pepper(id="2026", secret=b"n" * 40)
TOKEN = DEFAULT_TOKEN_FORMAT.generate(SeededRandom(11))


def reference(secret: bytes, token: str) -> bytes:
    return hmac.new(secret, token.encode(), hashlib.sha256).digest()


class TestPepper:
    def test_repr_and_str_hide_the_secret(self):
        """Neither repr nor str of a pepper contains its secret."""
        pepper = Pepper(id="p1", secret=b"very-secret-value-0123456789abcdef")
        for text in (repr(pepper), str(pepper)):
            assert "very-secret" not in text
            assert "p1" in text

    @pytest.mark.parametrize(
        ("secret", "code"),
        [
            (b"short", "secret.too_short"),
            (b"x" * 31, "secret.too_short"),
            ("x" * 40, "secret.invalid_type"),
            (None, "secret.invalid_type"),
        ],
    )
    def test_weak_secrets_are_refused(self, secret, code):
        """A pepper secret must be bytes of at least 32 bytes."""
        with pytest.raises(ValidationError) as info:
            Pepper(id="p1", secret=secret)
        assert info.value.codes == (code,)
        assert "x" * 31 not in str(info.value)

    @pytest.mark.parametrize("pepper_id", ["", "-x", "a b", "é", "a" * 33, 7])
    def test_invalid_ids_are_refused(self, pepper_id):
        """A pepper id is 1-32 characters of [A-Za-z0-9_.-], starting alphanumeric."""
        with pytest.raises(ValidationError) as info:
            Pepper(id=pepper_id, secret=b"s" * 32)
        assert info.value.codes == ("pepper_id.invalid",)

    def test_generate_draws_32_bytes_from_the_source(self):
        """Pepper.generate takes its secret from the injected random source."""
        pepper = Pepper.generate("p9", rng=SeededRandom(1))
        assert pepper.id == "p9"
        assert pepper.secret == SeededRandom(1).token_bytes(32)

    def test_generate_defaults_to_the_system_source(self):
        """Without a source, two generated peppers differ."""
        assert Pepper.generate("a").secret != Pepper.generate("a").secret


class TestTokenHasher:
    def test_digest_is_hmac_sha256_under_the_current_pepper(self):
        """The digest is 32 bytes of HMAC-SHA256 keyed with the first pepper."""
        hasher = TokenHasher([NEW, OLD])
        digest = hasher.digest(TOKEN)
        assert len(digest) == 32
        assert digest == reference(NEW.secret, TOKEN)
        assert hasher.current_pepper_id == "2026"

    def test_digest_under_a_named_pepper(self):
        """A pepper id selects which pepper keys the digest."""
        hasher = TokenHasher([NEW, OLD])
        assert hasher.digest(TOKEN, "2025") == reference(OLD.secret, TOKEN)

    def test_digest_is_stable_across_calls_and_instances(self):
        """The same token and pepper always give the same digest (it is stored and looked up)."""
        first = TokenHasher([NEW]).digest(TOKEN)
        assert TokenHasher([NEW]).digest(TOKEN) == first
        assert TokenHasher([NEW, OLD]).digest(TOKEN) == first

    def test_database_copy_alone_is_useless(self):
        """Without the pepper, the digest cannot be recomputed from the token."""
        digest = TokenHasher([NEW]).digest(TOKEN)
        assert digest != hashlib.sha256(TOKEN.encode()).digest()
        assert digest != TokenHasher([Pepper(id="2026", secret=b"z" * 32)]).digest(TOKEN)

    def test_unknown_pepper_id(self):
        """Asking for a pepper that is not configured raises NotFoundError."""
        hasher = TokenHasher([NEW])
        with pytest.raises(NotFoundError) as info:
            hasher.digest(TOKEN, "1999")
        assert info.value.code == "pepper.not_found"

    def test_candidates_current_first_then_older(self):
        """Candidates list every pepper's digest, current first, in configured order."""
        hasher = TokenHasher([NEW, OLD])
        assert list(hasher.candidates(TOKEN)) == [
            ("2026", reference(NEW.secret, TOKEN)),
            ("2025", reference(OLD.secret, TOKEN)),
        ]

    def test_candidates_are_lazy(self):
        """A caller that finds the token under the current pepper need not compute the rest."""
        candidates = TokenHasher([NEW, OLD]).candidates(TOKEN)
        assert next(candidates)[0] == "2026"

    def test_rotation(self):
        """After rotation, a token hashed under the old pepper is found and marked for re-keying."""
        before = TokenHasher([OLD])
        stored_pepper, stored_digest = before.current_pepper_id, before.digest(TOKEN)
        after = TokenHasher([NEW, OLD])
        match = next(pid for pid, d in after.candidates(TOKEN) if digests_equal(d, stored_digest))
        assert match == stored_pepper == "2025"
        assert after.needs_rekey(match)
        assert not after.needs_rekey(after.current_pepper_id)
        assert after.verify(TOKEN, pepper_id="2025", digest=stored_digest)
        assert after.digest(TOKEN) != stored_digest

    def test_verify(self):
        """verify accepts the right digest and refuses a wrong digest, token or pepper."""
        hasher = TokenHasher([NEW, OLD])
        digest = hasher.digest(TOKEN)
        assert hasher.verify(TOKEN, pepper_id="2026", digest=digest)
        assert not hasher.verify(TOKEN, pepper_id="2025", digest=digest)
        assert not hasher.verify(TOKEN + "x", pepper_id="2026", digest=digest)
        assert not hasher.verify(TOKEN, pepper_id="gone", digest=digest)

    def test_pepper_ids(self):
        """pepper_ids lists ids current first."""
        assert TokenHasher([NEW, OLD]).pepper_ids == ("2026", "2025")

    def test_needs_at_least_one_pepper(self):
        """A hasher without peppers is refused."""
        with pytest.raises(ValidationError) as info:
            TokenHasher([])
        assert info.value.codes == ("peppers.required",)

    def test_duplicate_ids_are_refused(self):
        """Two peppers with the same id would make stored rows ambiguous."""
        with pytest.raises(ValidationError) as info:
            TokenHasher([NEW, Pepper(id="2026", secret=b"q" * 32)])
        assert info.value.codes == ("peppers.duplicate_id",)
        assert info.value.errors[0].params["duplicates"] == ["2026"]

    def test_repr_hides_secrets(self):
        """The hasher's repr shows pepper ids but no secret."""
        text = repr(TokenHasher([NEW, OLD]))
        assert "2026" in text
        assert "nnnn" not in text
        assert "oooo" not in text

    @given(raw=st.text(max_size=100))
    @settings(max_examples=100)
    def test_any_string_hashes_without_error(self, raw):
        """Any string, even with lone surrogates, yields a 32-byte digest."""
        assert len(TokenHasher([NEW]).digest(raw)) == 32

    @given(a=st.text(max_size=50), b=st.text(max_size=50))
    @settings(max_examples=100)
    def test_distinct_tokens_have_distinct_digests(self, a, b):
        """Different tokens have different digests."""
        hasher = TokenHasher([NEW])
        assert (hasher.digest(a) == hasher.digest(b)) == (a == b)


class TestPreparedHmac:
    @given(secret=st.binary(min_size=32, max_size=200), raw=st.text(max_size=80))
    @settings(max_examples=200)
    def test_equals_the_standard_library_hmac(self, secret, raw):
        """The prepared-state digest equals hmac.digest(secret, token, sha256) for any key."""
        hasher = TokenHasher([Pepper(id="k", secret=secret)])
        expected = hmac.digest(secret, raw.encode("utf-8", "surrogatepass"), "sha256")
        assert hasher.digest(raw) == expected
        assert hasher.digest(raw, "k") == expected
        assert hasher.current_digest(raw) == expected

    def test_candidates_can_skip_the_current_pepper(self):
        """include_current=False yields only the older peppers' digests."""
        hasher = TokenHasher([NEW, OLD])
        assert list(hasher.candidates(TOKEN, include_current=False)) == [
            ("2025", reference(OLD.secret, TOKEN))
        ]

    def test_current_digest_follows_the_first_pepper(self):
        """current_digest uses the first pepper."""
        assert TokenHasher([NEW, OLD]).current_digest(TOKEN) == reference(NEW.secret, TOKEN)


class TestDigestsEqual:
    @pytest.mark.parametrize(
        ("a", "b", "expected"),
        [
            (b"\x00" * 32, b"\x00" * 32, True),
            (b"\x00" * 32, b"\x00" * 31 + b"\x01", False),
            (b"\x00" * 32, b"\x00" * 31, False),
            (b"", b"", True),
        ],
    )
    def test_compares_bytes(self, a, b, expected):
        """digests_equal is plain equality on bytes (computed in constant time)."""
        assert digests_equal(a, b) is expected
