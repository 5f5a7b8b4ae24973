from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._clock import FixedClock
from enspace_profile._random import SeededRandom
from enspace_profile._security.recovery import (
    RECOVERY_CODE_ALPHABET,
    PendingRecoveryCodes,
    RecoveryCode,
    RecoveryCodeHasher,
    RecoveryCodeSet,
    RecoveryCodeState,
    generate_recovery_codes,
    normalize_recovery_code,
)
from enspace_profile.exceptions import PolicyError, ValidationError

PEPPER = b"pepper-" * 5
CODE_RE = re.compile(
    r"[23456789abcdefghjkmnpqrstuvwxyz]{4}(-[23456789abcdefghjkmnpqrstuvwxyz]{4}){2}"
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def hasher(seed: int = 0) -> RecoveryCodeHasher:
    return RecoveryCodeHasher(PEPPER, rng=SeededRandom(seed))


def confirmed_set(clock: FixedClock, *, count: int = 10) -> tuple[tuple[str, ...], RecoveryCodeSet]:
    pending = PendingRecoveryCodes.generate(SeededRandom(1), hasher(), now=clock.now(), count=count)
    return pending.codes, pending.code_set.confirm(now=clock.now())


class TestGenerate:
    def test_ten_codes_by_default(self):
        """A new set has ten codes."""
        assert len(generate_recovery_codes(SeededRandom(1))) == 10

    def test_codes_are_distinct_and_well_formed(self):
        """Each code is three groups of four characters from the safe alphabet."""
        codes = generate_recovery_codes(SeededRandom(1), count=100)
        assert len(set(codes)) == 100
        assert all(CODE_RE.fullmatch(code) for code in codes)

    def test_each_code_has_at_least_50_bits(self):
        """Twelve characters of a 31-character alphabet carry more than 50 bits."""
        assert 12 * math.log2(len(RECOVERY_CODE_ALPHABET)) >= 50

    @pytest.mark.parametrize("char", ["0", "o", "O", "1", "l", "I", "i"])
    def test_alphabet_has_no_look_alikes(self, char):
        """Characters that are easy to confuse are never used."""
        assert char not in RECOVERY_CODE_ALPHABET

    def test_all_alphabet_characters_are_used(self):
        """Rejection sampling still reaches every character of the alphabet."""
        codes = generate_recovery_codes(SeededRandom(3), count=100)
        assert set("".join(codes).replace("-", "")) == set(RECOVERY_CODE_ALPHABET)

    def test_deterministic_with_a_seeded_source(self):
        """Codes come only from the injected random source."""
        assert generate_recovery_codes(SeededRandom(9)) == generate_recovery_codes(SeededRandom(9))
        assert generate_recovery_codes(SeededRandom(9)) != generate_recovery_codes(SeededRandom(10))

    @pytest.mark.parametrize("count", [0, -1, 101])
    def test_refuses_unreasonable_counts(self, count):
        """The count is between 1 and 100."""
        with pytest.raises(ValidationError) as info:
            generate_recovery_codes(SeededRandom(1), count=count)
        assert info.value.codes == ("count.out_of_range",)


class TestNormalize:
    @pytest.mark.parametrize(
        "typed",
        [
            "k7mq-3xrf-p9dw",
            "K7MQ-3XRF-P9DW",
            "k7mq3xrfp9dw",
            " k7mq 3xrf p9dw ",
            "k7-mq-3x-rf-p9-dw",
            "k7mq\t3xrf-p9dw",
        ],
    )
    def test_accepts_any_spelling(self, typed):
        """Case, spaces and hyphens do not matter."""
        assert normalize_recovery_code(typed) == "k7mq-3xrf-p9dw"

    @pytest.mark.parametrize(
        "typed",
        [
            "",
            "k7mq-3xrf-p9d",
            "k7mq-3xrf-p9dww",
            "k7mq-3xrf-p9d0",
            "k7mq-3xrf-p9do",
            "k7mq_3xrf_p9dw",
            "k7mq-3xrf-p9dé",
            None,
            12,
            "x" * 1000,
        ],
    )
    def test_refuses_what_cannot_be_a_code(self, typed):
        """Wrong length, foreign characters or non-strings give None."""
        assert normalize_recovery_code(typed) is None

    @settings(max_examples=200)
    @given(st.text(max_size=40))
    def test_never_raises(self, typed):
        """Any text gives a canonical code or None."""
        result = normalize_recovery_code(typed)
        assert result is None or CODE_RE.fullmatch(result)

    @settings(max_examples=200)
    @given(
        st.text(alphabet=RECOVERY_CODE_ALPHABET, min_size=12, max_size=12),
        st.lists(st.sampled_from(["", " ", "-"]), min_size=13, max_size=13),
        st.booleans(),
    )
    def test_normalisation_is_stable(self, compact, separators, upper):
        """Sprinkling separators and changing case never changes the canonical code."""
        typed = "".join(sep + ch for sep, ch in zip(separators, compact + " ", strict=True))
        if upper:
            typed = typed.upper()
        canonical = normalize_recovery_code(typed)
        assert canonical is not None
        assert canonical.replace("-", "") == compact
        assert normalize_recovery_code(canonical) == canonical


class TestHasher:
    def test_hash_is_not_the_code(self):
        """The stored value reveals nothing readable about the code."""
        code = generate_recovery_codes(SeededRandom(1))[0]
        digest = hasher().hash(code)
        assert code.encode() not in digest
        assert code.replace("-", "").encode() not in digest

    def test_matches_any_spelling(self):
        """A code matches its hash whatever case or grouping the user types."""
        code = "k7mq-3xrf-p9dw"
        digest = hasher().hash(code)
        assert hasher().matches(code, digest)
        assert hasher().matches("K7MQ 3XRF P9DW", digest)

    def test_different_code_does_not_match(self):
        """Another code does not match."""
        assert not hasher().matches("k7mq-3xrf-p9dx", hasher().hash("k7mq-3xrf-p9dw"))

    def test_salted(self):
        """Hashing the same code twice gives different stored values that both match."""
        h = RecoveryCodeHasher(PEPPER, rng=SeededRandom(5))
        first, second = h.hash("k7mq-3xrf-p9dw"), h.hash("k7mq-3xrf-p9dw")
        assert first != second
        assert h.matches("k7mq-3xrf-p9dw", first)
        assert h.matches("k7mq-3xrf-p9dw", second)

    def test_pepper_matters(self):
        """A hash made with one pepper does not match under another."""
        digest = hasher().hash("k7mq-3xrf-p9dw")
        assert not RecoveryCodeHasher(b"other-pepper-1234").matches("k7mq-3xrf-p9dw", digest)

    @pytest.mark.parametrize("stored", [b"", b"\x01" * 10, b"\x02" + b"\x00" * 48, "text"])
    def test_malformed_stored_values_never_match(self, stored):
        """A corrupt or foreign stored value is simply not a match."""
        assert not hasher().matches("k7mq-3xrf-p9dw", stored)

    def test_hash_refuses_non_codes(self):
        """Only recovery codes can be hashed."""
        with pytest.raises(ValidationError) as info:
            hasher().hash("password")
        assert info.value.codes == ("recovery_code.invalid",)

    def test_pepper_must_be_long_enough(self):
        """A short pepper is refused."""
        with pytest.raises(ValidationError) as info:
            RecoveryCodeHasher(b"short")
        assert info.value.codes == ("pepper.too_short",)

    def test_repr_hides_the_pepper(self):
        """The pepper never appears in the repr."""
        assert "pepper-" not in repr(hasher())


class TestRecoveryCodeSet:
    def setup_method(self):
        self.clock = FixedClock(T0)
        self.codes, self.code_set = confirmed_set(self.clock)

    def test_fresh_set(self):
        """A new set has all codes remaining and is not low."""
        assert self.code_set.remaining == 10
        assert not self.code_set.low
        assert self.code_set.generated_at == T0
        assert self.code_set.confirmed

    def test_each_code_works_once(self):
        """Using a code marks it used; using it again fails."""
        self.clock.advance(days=3)
        used = self.code_set.use(self.codes[4], hasher(), self.clock.now())
        assert used is not None
        assert used.remaining == 9
        assert used.codes[4].used_at == T0 + timedelta(days=3)
        assert used.use(self.codes[4], hasher(), self.clock.now()) is None

    def test_original_set_is_unchanged(self):
        """Sets are immutable: use returns a new set."""
        self.code_set.use(self.codes[0], hasher(), self.clock.now())
        assert self.code_set.remaining == 10

    def test_codes_are_checked_case_insensitively(self):
        """A code typed in upper case with spaces still works."""
        typed = self.codes[0].upper().replace("-", " ")
        assert self.code_set.use(typed, hasher(), self.clock.now()) is not None

    @pytest.mark.parametrize("typed", ["k7mq-3xrf-p9dw", "", "not a code", None])
    def test_unknown_or_malformed_codes_fail(self, typed):
        """A code that is not in the set, or not a code at all, gives None."""
        assert self.code_set.use(typed, hasher(), self.clock.now()) is None

    @pytest.mark.parametrize(("used", "low"), [(6, False), (7, True), (9, True), (10, True)])
    def test_low_when_three_or_fewer_remain(self, used, low):
        """The set is low once three or fewer codes are left."""
        code_set: RecoveryCodeSet | None = self.code_set
        for code in self.codes[:used]:
            assert code_set is not None
            code_set = code_set.use(code, hasher(), self.clock.now())
        assert code_set is not None
        assert code_set.remaining == 10 - used
        assert code_set.low is low

    def test_unconfirmed_set_does_not_work(self):
        """Codes of a set the user has not confirmed are not accepted."""
        pending = PendingRecoveryCodes.generate(SeededRandom(2), hasher(), now=T0)
        assert not pending.code_set.confirmed
        assert pending.code_set.use(pending.codes[0], hasher(), T0) is None

    def test_confirm_records_when(self):
        """Confirming stamps the time; confirming again keeps the first time."""
        pending = PendingRecoveryCodes.generate(SeededRandom(2), hasher(), now=T0)
        confirmed = pending.code_set.confirm(now=T0 + timedelta(minutes=1))
        assert confirmed.confirmed_at == T0 + timedelta(minutes=1)
        assert confirmed.confirm(now=T0 + timedelta(hours=1)) is confirmed

    def test_repr_hides_hashes(self):
        """Stored hashes are left out of reprs."""
        assert repr(self.code_set.codes[0].digest) not in repr(self.code_set)
        assert "digest" not in repr(RecoveryCode(digest=b"\x01" * 49))

    def test_naive_times_are_refused(self):
        """Times must be timezone-aware."""
        with pytest.raises(ValueError, match="naive"):
            self.code_set.use(self.codes[0], hasher(), datetime(2026, 1, 1))  # noqa: DTZ001


class TestPendingRecoveryCodes:
    def test_plaintext_codes_match_the_stored_set(self):
        """Every shown code corresponds to one stored hash."""
        pending = PendingRecoveryCodes.generate(SeededRandom(1), hasher(), now=T0, count=5)
        assert len(pending.codes) == 5
        for code, stored in zip(pending.codes, pending.code_set.codes, strict=True):
            assert hasher().matches(code, stored.digest)

    def test_repr_hides_the_codes(self):
        """Plaintext codes never appear in the repr."""
        pending = PendingRecoveryCodes.generate(SeededRandom(1), hasher(), now=T0)
        text = repr(pending)
        assert all(code not in text for code in pending.codes)
        assert "10 codes hidden" in text


class TestRecoveryCodeState:
    def setup_method(self):
        self.clock = FixedClock(T0)
        self.old_codes, old_set = confirmed_set(self.clock)
        self.state = RecoveryCodeState(active=old_set)
        self.new = PendingRecoveryCodes.generate(SeededRandom(99), hasher(), now=T0)

    def test_old_codes_keep_working_until_confirmed(self):
        """Regenerating does not disable the old codes before the user confirms."""
        state = self.state.start_regeneration(self.new.code_set)
        assert state.use(self.old_codes[0], hasher(), T0) is not None
        assert state.use(self.new.codes[0], hasher(), T0) is None

    def test_confirm_replaces_the_old_set(self):
        """After confirming, only the new codes work."""
        state = self.state.start_regeneration(self.new.code_set).confirm(now=T0)
        assert state.pending is None
        assert state.active is not None
        assert state.active.confirmed
        assert state.use(self.new.codes[0], hasher(), T0) is not None
        assert state.use(self.old_codes[0], hasher(), T0) is None

    def test_discarding_keeps_the_old_set(self):
        """Cancelling a regeneration leaves the active codes as they were."""
        state = self.state.start_regeneration(self.new.code_set).discard_pending()
        assert state == self.state

    def test_a_newer_regeneration_replaces_the_pending_one(self):
        """Generating twice keeps only the latest pending set."""
        newer = PendingRecoveryCodes.generate(SeededRandom(100), hasher(), now=T0)
        state = self.state.start_regeneration(self.new.code_set).start_regeneration(newer.code_set)
        assert state.confirm(now=T0).use(self.new.codes[0], hasher(), T0) is None

    def test_confirm_without_pending_is_refused(self):
        """There is nothing to confirm without a regeneration."""
        with pytest.raises(PolicyError) as info:
            self.state.confirm(now=T0)
        assert info.value.code == "recovery_codes.nothing_pending"

    def test_first_setup_goes_through_pending(self):
        """A user without codes gets working codes only after confirming."""
        empty = RecoveryCodeState()
        assert empty.use(self.new.codes[0], hasher(), T0) is None
        state = empty.start_regeneration(self.new.code_set).confirm(now=T0)
        assert state.use(self.new.codes[0], hasher(), T0) is not None

    def test_invariants(self):
        """The active set must be confirmed and a pending set must not be."""
        with pytest.raises(ValidationError) as info:
            RecoveryCodeState(active=self.new.code_set)
        assert info.value.codes == ("active.unconfirmed",)
        with pytest.raises(ValidationError) as info:
            self.state.start_regeneration(self.new.code_set.confirm(now=T0))
        assert info.value.codes == ("pending.already_confirmed",)
