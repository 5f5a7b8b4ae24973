from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._random import SeededRandom
from enspace_profile._security.password_policy import (
    PasswordPolicy,
    check_not_reused,
    common_passwords,
)
from enspace_profile._security.passwords import PasswordHash, ScryptHasher
from enspace_profile.exceptions import ValidationError

STRONG = "correct horse battery staple"
POLICY = PasswordPolicy()


def check_codes(policy: PasswordPolicy, password: object, **context) -> tuple[str, ...]:
    """Return the error codes ``policy.check`` raises, or () when it accepts."""
    context.setdefault("user_id", "u-42")
    try:
        policy.check(password, **context)
    except ValidationError as error:
        return error.codes
    return ()


def check_or_error(policy: PasswordPolicy, password: object, **context) -> str | ValidationError:
    try:
        return policy.check(password, **context)
    except ValidationError as error:
        return error


def error_for(policy: PasswordPolicy, password: object, **context) -> ValidationError:
    context.setdefault("user_id", "u-42")
    with pytest.raises(ValidationError) as error:
        policy.check(password, **context)
    return error.value


class TestCommonPasswords:
    def test_has_at_least_ten_thousand(self):
        """The bundled blocklist holds at least 10 000 passwords (30 000 from zxcvbn)."""
        assert len(common_passwords()) >= 10_000
        assert len(common_passwords()) == 30_000

    def test_entries_are_folded(self):
        """Every entry is stored NFKC case-folded, as candidates are compared."""
        assert all(
            unicodedata.normalize("NFKC", word).casefold() == word for word in common_passwords()
        )

    @pytest.mark.parametrize("word", ["123456", "password", "qwerty", "iloveyou", "letmein"])
    def test_contains_the_classics(self, word):
        """The most common passwords are on the list."""
        assert word in common_passwords()

    def test_loaded_once(self):
        """The list is read once and shared."""
        assert common_passwords() is common_passwords()


class TestLength:
    @pytest.mark.parametrize(
        ("password", "two_factor", "expected"),
        [
            ("a" * 0, False, ("password.too_short",)),
            ("tulip-mango-14", False, ("password.too_short",)),  # 14
            ("tulip-mango-153", False, ()),  # 15
            ("tulip-m", True, ("password.too_short",)),  # 7
            ("tulip-m8", True, ()),  # 8
            ("tulip-mango-14", True, ()),
        ],
    )
    def test_minimum_depends_on_second_factor(self, password, two_factor, expected):
        """At least 15 characters alone, at least 8 with a second factor."""
        assert check_codes(POLICY, password, two_factor=two_factor) == expected

    def test_too_short_params(self):
        """too_short carries the minimum and the actual length."""
        error = error_for(POLICY, "short one")
        assert error.errors[0].params == {"minimum": 15, "actual": 9}

    def test_maximum_is_128_and_nothing_is_truncated(self):
        """128 characters pass unchanged; 129 are refused with the limit."""
        long = ("tulip mango river " * 8)[:128]
        assert POLICY.check(long, user_id="u-42") == long
        error = error_for(POLICY, long + "x")
        assert error.codes == ("password.too_long",)
        assert error.errors[0].params == {"maximum": 128, "actual": 129}

    def test_counts_code_points_after_normalisation(self):
        """A decomposed accent counts once, as NFKC composes it."""
        typed = "nothing ventured e\u0301"  # 19 code points typed, 18 after NFKC
        assert POLICY.check(typed, user_id="u-42") == "nothing ventured \u00e9"
        assert check_codes(POLICY, "rainy day e\u0301te\u0301") == (
            "password.too_short",
        )  # 15 -> 13

    def test_normalisation_can_lengthen(self):
        """A ligature expands under NFKC and is counted expanded."""
        assert POLICY.check("o\ufb03ce!!", user_id="u-42", two_factor=True) == "office!!"

    @pytest.mark.parametrize(
        "password",
        [
            "  spaces   inside  and out  ",
            "\u00fcber-stra\u00dfe-gr\u00fc\u00dfe",
            "\u6211\u7684\u5bc6\u7801\u662f\u4e00\u4e2a\u5f88\u957f\u7684\u53e5\u5b50\u5bf9\u5427\u5440",
            "\U0001f468\u200d\U0001f469\u200d\U0001f467 family emoji pass",
            "\ue000 private use is typeable \ue001",
        ],
    )
    def test_accepts_any_typeable_text(self, password):
        """Spaces, any script, emoji with joiners and private-use characters are allowed."""
        assert POLICY.check(password, user_id="u-42") == unicodedata.normalize("NFKC", password)

    def test_no_composition_rules(self):
        """Only lowercase letters and spaces is fine when long enough."""
        assert POLICY.check("purple monkey dishwasher", user_id="u-42")


class TestBlocklist:
    @pytest.mark.parametrize(
        "password",
        [
            "password",
            "PassWord",
            "\uff30\uff41\uff53\uff53\uff57\uff4f\uff52\uff44",  # full-width "Password"
            "iloveyou",
            "1qaz2wsx3edc4rfv",
            "qwerty123456789",
        ],
    )
    def test_refuses_common_passwords_case_insensitively(self, password):
        """Passwords on the list are refused whatever their case or width."""
        assert "password.common" in check_codes(POLICY, password, two_factor=True)

    @pytest.mark.parametrize(
        "password",
        [
            "aaaaaaaaaaaaaaaa",
            "abababababababab",
            "abcabcabcabcabca",
            "passwordpassword",
            "1234567890123456",
            "qwertyuiopqwertyuiop",
        ],
    )
    def test_refuses_repetitions(self, password):
        """Repeating a short unit or a common password does not make it strong."""
        assert check_codes(POLICY, password) == ("password.common",)

    def test_accepts_uncommon_passwords(self):
        """A passphrase that is not on the list passes."""
        assert check_codes(POLICY, STRONG) == ()

    def test_extra_blocklist(self):
        """The host's own words are refused case-insensitively, after normalisation."""
        policy = PasswordPolicy(extra_blocklist=["ENSPACE user panel", "Caf\u00e9 Enspace 2026!"])
        assert check_codes(policy, "enspace USER panel") == ("password.common",)
        assert check_codes(policy, "cafe\u0301 enspace 2026!") == ("password.common",)
        assert check_codes(policy, STRONG) == ()

    def test_bundled_list_can_be_turned_off(self):
        """With use_common_passwords=False only the host's list applies."""
        policy = PasswordPolicy(use_common_passwords=False)
        assert check_codes(policy, "qwerty123456789") == ()
        assert check_codes(policy, "passwordpassword") == ()
        assert check_codes(policy, "aaaaaaaaaaaaaaaa") == ("password.common",)

    def test_extra_blocklist_must_be_a_collection(self):
        """A single string is refused rather than read as a set of characters."""
        with pytest.raises(ValidationError) as error:
            PasswordPolicy(extra_blocklist="enspace")
        assert error.value.codes == ("extra_blocklist.invalid",)


class TestPersonalInfo:
    @pytest.mark.parametrize(
        ("password", "names", "user_id", "sources"),
        [
            ("my lovelace is strong", ["Ada Lovelace"], "u-42", ("name",)),
            ("ADA-and-numbers-1815", ["Ada Lovelace"], "u-42", ("name",)),
            ("jose-likes-green-tea", ["Jos\u00e9"], "u-42", ("name",)),
            ("jones the third of may", ["Smith-Jones"], "u-42", ("name",)),
            ("o'brien forever and ever", ["Conan O'Brien"], "u-42", ("name",)),
            ("my-name-is-li-and-i-am", ["Li Na"], "u-42", ()),  # parts under 3 ignored
            ("hello ada0042 you", [], "ada0042", ("user_id",)),
            ("hello jdoe how are you", [], "jdoe@example.com", ("user_id",)),
            ("jdoe the doe of does", ["John Doe"], "jdoe@example.com", ("name", "user_id")),
            ("u1 is not enough here", [], "u1", ()),  # ids under 3 ignored
            (STRONG, ["Ada Lovelace"], "ada", ()),
        ],
    )
    def test_refuses_own_name_and_id(self, password, names, user_id, sources):
        """Name parts and the user id (3+ characters) may not appear, ignoring case and accents."""
        codes = check_codes(POLICY, password, names=names, user_id=user_id)
        if sources:
            assert codes == ("password.contains_personal_info",)
            error = error_for(POLICY, password, names=names, user_id=user_id)
            assert error.errors[0].params == {"sources": sources}
        else:
            assert codes == ()


class TestInvalid:
    @pytest.mark.parametrize("password", [None, 123, b"bytes are not text", ["a"]])
    def test_not_text(self, password):
        """Only text can be a password."""
        error = error_for(POLICY, password)
        assert error.codes == ("password.invalid",)
        assert error.errors[0].params == {"reason": "not_text"}

    @pytest.mark.parametrize(
        "bad",
        ["\t", "\n", "\x00", "\x7f", "\x85", "\ud800", "\u0378", "\U000effff", "\ufffe"],
    )
    def test_refuses_untypeable_characters(self, bad):
        """Control, lone surrogate and unassigned code points are refused."""
        error = error_for(POLICY, f"long enough {bad} password here")
        assert error.codes == ("password.invalid",)
        assert error.errors[0].params == {"reason": "characters"}


class TestAllProblemsAtOnce:
    def test_lists_every_problem(self):
        """One ValidationError carries every problem, in a stable order."""
        error = error_for(POLICY, "ada\tada\tada\t", names=["Ada"])
        assert error.codes == (
            "password.invalid",
            "password.too_short",
            "password.common",
            "password.contains_personal_info",
        )
        assert set(error.fields) == {"password"}

    def test_field_name_prefixes_codes(self):
        """The field option names the field and prefixes the codes."""
        error = error_for(POLICY, "short", field="new_password")
        assert error.codes == ("new_password.too_short",)
        assert error.fields == ("new_password",)

    def test_password_never_in_messages(self):
        """Messages and parameters never repeat the password."""
        secret = "Zq9!adalovelace"
        error = error_for(POLICY, secret, names=["Ada Lovelace"])
        assert secret.casefold() not in str(error).casefold()
        assert all(secret not in repr(e.params) for e in error.errors)


class TestConfiguration:
    def test_defaults(self):
        """Defaults follow NIST SP 800-63B-4."""
        assert (POLICY.min_length, POLICY.min_length_two_factor, POLICY.max_length) == (15, 8, 128)

    @pytest.mark.parametrize(
        ("options", "fields"),
        [
            ({"max_length": 63}, ("max_length",)),
            ({"min_length": 0}, ("min_length",)),
            ({"min_length": 200}, ("min_length",)),
            (
                {"min_length": 200, "min_length_two_factor": 300},
                ("min_length", "min_length_two_factor"),
            ),
            ({"min_length_two_factor": "8"}, ("min_length_two_factor",)),
        ],
    )
    def test_refuses_bad_limits(self, options, fields):
        """Limits out of range are refused when the policy is built."""
        with pytest.raises(ValidationError) as error:
            PasswordPolicy(**options)
        assert error.value.fields == fields

    def test_custom_limits(self):
        """Hosts may raise the limits."""
        policy = PasswordPolicy(min_length=20, max_length=64)
        assert check_codes(policy, STRONG[:19]) == ("password.too_short",)
        assert check_codes(policy, "tulip mango " * 6) == ("password.too_long",)

    def test_repr_is_short(self):
        """The repr summarises the host's blocklist instead of listing it."""
        policy = PasswordPolicy(extra_blocklist=["secret-product-name"])
        assert "secret-product-name" not in repr(policy)
        assert "<1 passwords>" in repr(policy)


class TestProperties:
    PERMISSIVE = PasswordPolicy(min_length=1, min_length_two_factor=1)

    @settings(max_examples=200)
    @given(
        password=st.one_of(st.text(), st.binary(), st.integers(), st.none()),
        names=st.lists(st.text(max_size=10), max_size=3),
        user_id=st.text(max_size=10),
        two_factor=st.booleans(),
    )
    def test_only_validation_error_escapes(self, password, names, user_id, two_factor):
        """Any input is either accepted (returned NFKC) or refused with ValidationError."""
        result = check_or_error(
            POLICY, password, user_id=user_id, names=names, two_factor=two_factor
        )
        if isinstance(result, ValidationError):
            assert all(code.startswith("password.") for code in result.codes)
        else:
            assert isinstance(password, str)
            assert result == unicodedata.normalize("NFKC", password)

    @settings(max_examples=200)
    @given(st.text(min_size=1))
    def test_normalisation_is_idempotent(self, password):
        """Checking an accepted password again returns it unchanged."""
        try:
            result = self.PERMISSIVE.check(password, user_id="")
        except ValidationError:
            return
        assert unicodedata.is_normalized("NFKC", result)
        assert self.PERMISSIVE.check(result, user_id="") == result


class TestCheckNotReused:
    FRONT = PasswordHash([ScryptHasher(log2_n=4, random=SeededRandom(0))])

    def test_refuses_current_password(self):
        """The current password cannot be chosen again, even spelled differently."""
        current = self.FRONT.hash("caf\u00e9 au lait tonight")
        for candidate in ["caf\u00e9 au lait tonight", "cafe\u0301 au lait tonight"]:
            with pytest.raises(ValidationError) as error:
                check_not_reused(candidate, current_hash=current, hasher=self.FRONT)
            assert error.value.codes == ("password.reused",)

    def test_accepts_a_new_password(self):
        """A different password passes."""
        current = self.FRONT.hash("old password here")
        check_not_reused(STRONG, current_hash=current, hasher=self.FRONT)

    def test_no_current_password(self):
        """An account without a password accepts any new one."""
        check_not_reused(STRONG, current_hash=None, hasher=self.FRONT)

    def test_field_name(self):
        """The field option names the field in the code."""
        current = self.FRONT.hash(STRONG)
        with pytest.raises(ValidationError) as error:
            check_not_reused(STRONG, current_hash=current, hasher=self.FRONT, field="new_password")
        assert error.value.codes == ("new_password.reused",)
