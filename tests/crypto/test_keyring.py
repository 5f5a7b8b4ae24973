from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._crypto.keyring import (
    KEY_LENGTH,
    NONCE_LENGTH,
    EncryptionKey,
    KeyRing,
    SealedBox,
    aad_for,
)
from enspace_profile._random import SeededRandom
from enspace_profile.exceptions import ValidationError

KEY_A = EncryptionKey(id="2025-01", key=b"A" * 32)
KEY_B = EncryptionKey(id="2026-01", key=b"B" * 32)
AAD = aad_for("user-1", "github", "access_token")


def ring(*keys: EncryptionKey, seed: int = 0) -> KeyRing:
    return KeyRing(keys, rng=SeededRandom(seed))


class TestEncryptionKey:
    def test_repr_hides_the_key_material(self):
        """The key bytes never appear in the repr."""
        key = EncryptionKey(id="k1", key=b"\x13" * 32)
        assert "k1" in repr(key)
        assert repr(b"\x13" * 32) not in repr(key)
        assert "key=" not in repr(key)

    @pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
    def test_refuses_keys_that_are_not_32_bytes(self, length):
        """Only AES-256 keys are accepted."""
        with pytest.raises(ValidationError) as info:
            EncryptionKey(id="k1", key=b"x" * length)
        assert info.value.codes == ("key.wrong_length",)

    @pytest.mark.parametrize("key_id", ["", "-leading", "has space", "é", "x" * 65, "a/b"])
    def test_refuses_bad_key_ids(self, key_id):
        """Key ids are short ASCII identifiers so they serialise compactly."""
        with pytest.raises(ValidationError) as info:
            EncryptionKey(id=key_id, key=b"x" * 32)
        assert info.value.codes == ("key_id.invalid",)

    def test_generate_draws_from_the_random_source(self):
        """Generated keys come from the injected source: same seed, same key."""
        first = EncryptionKey.generate(SeededRandom(7), "k")
        again = EncryptionKey.generate(SeededRandom(7), "k")
        other = EncryptionKey.generate(SeededRandom(8), "k")
        assert len(first.key) == KEY_LENGTH
        assert first == again
        assert first != other

    @pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
    def test_base64_round_trip(self, encode):
        """Keys kept in config as standard or URL-safe base64 load back identically."""
        raw = bytes(range(32))
        text = encode(raw).decode().rstrip("=")
        assert EncryptionKey.from_base64("k", f"  {text}\n").key == raw
        assert EncryptionKey.from_base64("k", EncryptionKey(id="k", key=raw).to_base64()).key == raw

    @pytest.mark.parametrize("text", ["not base64!", "", "QUJD", "é"])
    def test_from_base64_refuses_garbage_without_echoing_it(self, text):
        """Bad config text is a ValidationError whose message does not contain the text."""
        with pytest.raises(ValidationError) as info:
            EncryptionKey.from_base64("k", text)
        assert info.value.codes[0] in {"key.invalid_base64", "key.wrong_length"}
        if text:
            assert text not in str(info.value)


class TestKeyRingConstruction:
    def test_needs_at_least_one_key(self):
        """An empty ring cannot encrypt anything and is refused."""
        with pytest.raises(ValidationError) as info:
            KeyRing([])
        assert info.value.codes == ("keys.empty",)

    def test_refuses_duplicate_key_ids(self):
        """Two keys with the same id would make decryption ambiguous."""
        with pytest.raises(ValidationError) as info:
            KeyRing([KEY_A, EncryptionKey(id=KEY_A.id, key=b"C" * 32)])
        assert info.value.codes == ("keys.duplicate_id",)

    def test_first_key_is_current(self):
        """The first key in the sequence is the one used to encrypt."""
        assert ring(KEY_B, KEY_A).current is KEY_B
        assert ring(KEY_B, KEY_A).key_ids == ("2026-01", "2025-01")

    def test_generate_makes_a_one_key_ring(self):
        """KeyRing.generate gives a working ring with a fresh key."""
        generated = KeyRing.generate(SeededRandom(3), "first")
        assert generated.key_ids == ("first",)
        assert generated.open(generated.seal(b"x", aad=AAD), aad=AAD) == b"x"

    def test_with_current_puts_the_new_key_first(self):
        """Adding a key makes it current while the old ones keep decrypting."""
        grown = ring(KEY_A).with_current(KEY_B)
        assert grown.key_ids == ("2026-01", "2025-01")

    def test_repr_hides_every_key(self):
        """A ring's repr shows key ids only."""
        text = repr(ring(KEY_A, KEY_B))
        assert "2025-01" in text
        assert "AAAA" not in text
        assert "BBBB" not in text


class TestSealAndOpen:
    def test_round_trip(self):
        """What is sealed opens again with the same associated data."""
        keys = ring(KEY_A)
        assert keys.open(keys.seal(b"secret value", aad=AAD), aad=AAD) == b"secret value"

    def test_empty_plaintext_round_trips(self):
        """Even an empty value is encrypted and authenticated."""
        keys = ring(KEY_A)
        assert keys.open(keys.seal(b"", aad=AAD), aad=AAD) == b""

    def test_seals_with_the_current_key_and_a_fresh_nonce(self):
        """Each seal uses the current key and a new 12-byte nonce from the random source."""
        keys = ring(KEY_B, KEY_A)
        first = keys.seal(b"same", aad=AAD)
        second = keys.seal(b"same", aad=AAD)
        assert first.key_id == second.key_id == "2026-01"
        assert len(first.nonce) == NONCE_LENGTH
        assert first.nonce != second.nonce
        assert first.ciphertext != second.ciphertext

    def test_nonces_come_from_the_injected_source(self):
        """The same seed gives the same box, so tests are reproducible."""
        assert ring(KEY_A, seed=5).seal(b"x", aad=AAD) == ring(KEY_A, seed=5).seal(b"x", aad=AAD)

    def test_ciphertext_does_not_contain_the_plaintext(self):
        """The stored bytes do not reveal the value."""
        box = ring(KEY_A).seal(b"hunter2-hunter2", aad=AAD)
        assert b"hunter2" not in box.to_bytes()

    @pytest.mark.parametrize(
        "other_aad",
        [
            aad_for("user-2", "github", "access_token"),
            aad_for("user-1", "gitlab", "access_token"),
            aad_for("user-1", "github", "refresh_token"),
            aad_for("user-1", "github"),
        ],
        ids=["other-user", "other-provider", "other-field", "fewer-parts"],
    )
    def test_ciphertext_moved_elsewhere_does_not_open(self, other_aad):
        """A box copied to another user's row, provider or column is refused."""
        keys = ring(KEY_A)
        box = keys.seal(b"token", aad=AAD)
        with pytest.raises(ValidationError) as info:
            keys.open(box, aad=other_aad)
        assert info.value.codes == ("ciphertext.undecryptable",)

    def test_swapping_two_users_ciphertexts_fails_both_ways(self):
        """Swapping the stored values of two users makes both undecryptable."""
        keys = ring(KEY_A)
        aad_1, aad_2 = aad_for("u1", "totp", "secret"), aad_for("u2", "totp", "secret")
        box_1, box_2 = keys.seal(b"s1", aad=aad_1), keys.seal(b"s2", aad=aad_2)
        for box, aad in ((box_1, aad_2), (box_2, aad_1)):
            with pytest.raises(ValidationError):
                keys.open(box, aad=aad)

    @pytest.mark.parametrize("part", ["nonce", "ciphertext-first", "tag-last"])
    def test_tampering_is_detected(self, part):
        """Flipping any bit of nonce, ciphertext or tag makes the box unopenable."""
        keys = ring(KEY_A)
        box = keys.seal(b"payload", aad=AAD)

        def flip(data: bytes, index: int) -> bytes:
            return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]

        tampered = {
            "nonce": SealedBox(
                key_id=box.key_id, nonce=flip(box.nonce, 0), ciphertext=box.ciphertext
            ),
            "ciphertext-first": SealedBox(
                key_id=box.key_id, nonce=box.nonce, ciphertext=flip(box.ciphertext, 0)
            ),
            "tag-last": SealedBox(
                key_id=box.key_id, nonce=box.nonce, ciphertext=flip(box.ciphertext, -1)
            ),
        }[part]
        with pytest.raises(ValidationError) as info:
            keys.open(tampered, aad=AAD)
        assert info.value.codes == ("ciphertext.undecryptable",)

    def test_unknown_key_id_is_reported_without_key_material(self):
        """A box from a key that left the ring names the missing id and nothing secret."""
        box = ring(KEY_A).seal(b"plain-secret", aad=AAD)
        with pytest.raises(ValidationError) as info:
            ring(KEY_B).open(box, aad=AAD)
        assert info.value.codes == ("ciphertext.unknown_key",)
        assert info.value.errors[0].params == {"key_id": "2025-01"}
        assert "plain-secret" not in str(info.value)

    def test_same_id_different_key_does_not_open(self):
        """Replacing a key's material under the same id is detected, not silently wrong."""
        box = ring(KEY_A).seal(b"x", aad=AAD)
        impostor = EncryptionKey(id=KEY_A.id, key=b"Z" * 32)
        with pytest.raises(ValidationError) as info:
            ring(impostor).open(box, aad=AAD)
        assert info.value.codes == ("ciphertext.undecryptable",)

    def test_errors_never_contain_secrets(self):
        """Neither the plaintext nor the key appears in a decryption error."""
        box = ring(KEY_A).seal(b"TOP-SECRET", aad=AAD)
        with pytest.raises(ValidationError) as info:
            ring(KEY_A).open(box, aad=aad_for("other"))
        text = str(info.value) + repr(info.value.errors)
        assert "TOP-SECRET" not in text
        assert "AAAA" not in text


class TestRotation:
    def test_old_keys_still_decrypt(self):
        """After a new key is added, boxes sealed with the old one still open."""
        old_box = ring(KEY_A).seal(b"v", aad=AAD)
        assert ring(KEY_B, KEY_A).open(old_box, aad=AAD) == b"v"

    def test_needs_rotation_only_for_non_current_keys(self):
        """A box needs rotation exactly when it was not sealed by the current key."""
        keys = ring(KEY_B, KEY_A)
        assert keys.needs_rotation(ring(KEY_A).seal(b"v", aad=AAD))
        assert not keys.needs_rotation(keys.seal(b"v", aad=AAD))

    def test_rotate_reencrypts_under_the_current_key(self):
        """Rotating moves a box to the newest key without changing its value."""
        keys = ring(KEY_B, KEY_A)
        rotated = keys.rotate(ring(KEY_A).seal(b"v", aad=AAD), aad=AAD)
        assert rotated.key_id == KEY_B.id
        assert not keys.needs_rotation(rotated)
        assert ring(KEY_B).open(rotated, aad=AAD) == b"v"

    def test_rotating_a_current_box_returns_it_unchanged(self):
        """Rotation is idempotent: a current box is kept as it is."""
        keys = ring(KEY_B, KEY_A)
        box = keys.seal(b"v", aad=AAD)
        assert keys.rotate(box, aad=AAD) is box

    def test_rotate_refuses_a_tampered_current_box(self):
        """Rotation authenticates first, even when no re-encryption is needed."""
        keys = ring(KEY_B)
        box = keys.seal(b"v", aad=AAD)
        with pytest.raises(ValidationError):
            keys.rotate(box, aad=aad_for("someone-else"))

    def test_old_key_can_be_dropped_after_rotation(self):
        """Once rotated, the box opens with a ring that no longer holds the old key."""
        rotated = ring(KEY_B, KEY_A).rotate(ring(KEY_A).seal(b"v", aad=AAD), aad=AAD)
        assert ring(KEY_B).open(rotated, aad=AAD) == b"v"


class TestSealedBoxSerialisation:
    def test_round_trip_through_bytes(self):
        """A box stored as one BLOB parses back to an equal box that opens."""
        keys = ring(KEY_A)
        box = keys.seal(b"value", aad=AAD)
        parsed = SealedBox.from_bytes(box.to_bytes())
        assert parsed == box
        assert keys.open(parsed, aad=AAD) == b"value"

    def test_layout_is_versioned_and_compact(self):
        """The format is version, key id length, key id, nonce, ciphertext and tag."""
        box = ring(KEY_A).seal(b"abc", aad=AAD)
        data = box.to_bytes()
        assert data[0] == 1
        assert data[1] == len("2025-01")
        assert data[2:9] == b"2025-01"
        assert data[9:21] == box.nonce
        assert data[21:] == box.ciphertext
        assert len(data) == 2 + 7 + 12 + 3 + 16

    def test_accepts_memoryview_and_bytearray(self):
        """Database drivers may return BLOBs as memoryview or bytearray."""
        data = ring(KEY_A).seal(b"x", aad=AAD).to_bytes()
        assert SealedBox.from_bytes(memoryview(data)) == SealedBox.from_bytes(bytearray(data))

    @pytest.mark.parametrize(
        ("data", "code"),
        [
            (b"", "ciphertext.malformed"),
            (b"\x01", "ciphertext.malformed"),
            (b"\x02\x01k" + b"n" * 12 + b"t" * 16, "ciphertext.unsupported_version"),
            (b"\x01\x01k" + b"n" * 12 + b"t" * 15, "ciphertext.malformed"),
            (b"\x01\x05k" + b"n" * 12 + b"t" * 16, "ciphertext.malformed"),
            (b"\x01\x01\xff" + b"n" * 12 + b"t" * 16, "ciphertext.malformed"),
            (b"\x01\x01 " + b"n" * 12 + b"t" * 16, "ciphertext.malformed"),
        ],
        ids=["empty", "header-only", "version", "short-tag", "id-overrun", "non-ascii", "bad-id"],
    )
    def test_malformed_bytes_are_refused(self, data, code):
        """Corrupt stored bytes raise a ValidationError with a precise code."""
        with pytest.raises(ValidationError) as info:
            SealedBox.from_bytes(data)
        assert info.value.codes == (code,)

    def test_repr_shows_sizes_not_bytes(self):
        """A box's repr names its key and sizes only."""
        box = ring(KEY_A).seal(b"abc", aad=AAD)
        assert repr(box) == "SealedBox(key_id='2025-01', nonce=<12 bytes>, ciphertext=<19 bytes>)"

    @settings(max_examples=200)
    @given(st.binary(max_size=80))
    def test_random_bytes_raise_only_our_errors(self, data):
        """Any byte string either parses or raises ValidationError, never anything else."""
        try:
            box = SealedBox.from_bytes(data)
        except ValidationError:
            return
        assert box.to_bytes() == data
        with pytest.raises(ValidationError):
            ring(KEY_A).open(box, aad=AAD)

    @settings(max_examples=100)
    @given(st.binary(max_size=64), st.lists(st.text(max_size=10), min_size=1, max_size=4))
    def test_round_trip_property(self, plaintext, parts):
        """Any plaintext with any associated data survives seal, serialise, parse, open."""
        keys = ring(KEY_A)
        aad = aad_for(*parts)
        parsed = SealedBox.from_bytes(keys.seal(plaintext, aad=aad).to_bytes())
        assert keys.open(parsed, aad=aad) == plaintext


class TestAadFor:
    @pytest.mark.parametrize(
        ("left", "right"),
        [
            (("ab", "c"), ("a", "bc")),
            (("a", ""), ("a",)),
            (("", "a"), ("a", "")),
            (("a:b",), ("a", "b")),
            (("u1", "x"), ("u", "1x")),
        ],
    )
    def test_different_splits_never_collide(self, left, right):
        """Length prefixes make every tuple of parts distinct."""
        assert aad_for(*left) != aad_for(*right)

    def test_is_deterministic(self):
        """The same parts always give the same bytes (it is stored nowhere, recomputed)."""
        assert aad_for("u1", "totp", "secret") == aad_for("u1", "totp", "secret")

    def test_needs_a_part(self):
        """Associated data that binds to nothing is refused."""
        with pytest.raises(ValidationError) as info:
            aad_for()
        assert info.value.codes == ("aad.empty",)

    def test_refuses_non_strings(self):
        """Parts are strings; bytes or ints are a programming error reported clearly."""
        with pytest.raises(ValidationError) as info:
            aad_for("u1", 3)  # type: ignore[arg-type]
        assert info.value.codes == ("aad.invalid",)

    @settings(max_examples=200)
    @given(
        st.lists(st.text(max_size=6), min_size=1, max_size=4),
        st.lists(st.text(max_size=6), min_size=1, max_size=4),
    )
    def test_injective(self, left, right):
        """Two different part lists never give the same associated data."""
        if left != right:
            assert aad_for(*left) != aad_for(*right)
