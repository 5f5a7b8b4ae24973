from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enspace_profile._security.accounts import (
    IDENTITY_PROVIDER_ACTIONS,
    AccountManagement,
    ManagedBy,
)
from enspace_profile._security.reauth import SensitiveAction
from enspace_profile.exceptions import ManagedExternallyError, ValidationError


class TestManagedBy:
    @pytest.mark.parametrize(
        "url",
        [
            None,
            "https://acme.okta.com/enduser/settings",
            "HTTPS://login.microsoftonline.com/",
            "https://idp.example.com:8443/account?tab=security#mfa",
            "http://localhost:8080/realms/dev/account",
            "http://127.0.0.1/account",
            "http://[::1]:9000/",
            "http://keycloak.localhost/",
        ],
    )
    def test_accepts_https_and_local_http(self, url):
        """https URLs are accepted, and http only for loopback hosts used in development."""
        assert ManagedBy(provider="Okta", manage_url=url).manage_url == url

    @pytest.mark.parametrize(
        ("url", "code"),
        [
            ("http://acme.okta.com/settings", "manage_url.insecure"),
            ("http://localhost.evil.com/", "manage_url.insecure"),
            ("http://10.0.0.1/", "manage_url.insecure"),
            ("ftp://example.com/", "manage_url.insecure"),
            ("javascript:alert(1)", "manage_url.invalid"),
            ("https://user:secret@idp.example.com/", "manage_url.credentials"),
            ("https://user@idp.example.com/", "manage_url.credentials"),
            ("https://:secret@idp.example.com/", "manage_url.credentials"),
            ("https:///no-host", "manage_url.invalid"),
            ("https://idp.example.com:99999/", "manage_url.invalid"),
            ("https://[::1/", "manage_url.invalid"),
            ("https://idp.example.com/a b", "manage_url.invalid"),
            ("https://idp.example.com\\@evil.com/", "manage_url.invalid"),
            ("https://idp.example.com/\n", "manage_url.invalid"),
            ("", "manage_url.invalid"),
            ("https://example.com/" + "a" * 3000, "manage_url.invalid"),
            ("idp.example.com/settings", "manage_url.invalid"),
        ],
    )
    def test_refuses_unsafe_urls(self, url, code):
        """Insecure schemes, embedded credentials and malformed URLs are refused."""
        with pytest.raises(ValidationError) as info:
            ManagedBy(provider="Okta", manage_url=url)
        assert info.value.codes == (code,)

    def test_credentials_are_not_echoed(self):
        """A refused URL's password does not end up in the error message."""
        with pytest.raises(ValidationError) as info:
            ManagedBy(provider="Okta", manage_url="https://u:hunter2@idp.example.com/")
        assert "hunter2" not in str(info.value)

    @pytest.mark.parametrize(
        ("provider", "code"),
        [
            ("", "provider.required"),
            ("   ", "provider.required"),
            ("a\nb", "provider.invalid"),
            ("x" * 101, "provider.invalid"),
        ],
    )
    def test_provider_name_is_checked(self, provider, code):
        """The provider's display name is required, printable and short."""
        with pytest.raises(ValidationError) as info:
            ManagedBy(provider=provider)
        assert info.value.codes == (code,)

    @settings(max_examples=200)
    @given(st.text(max_size=60))
    def test_any_url_text_is_accepted_or_a_validation_error(self, url):
        """Whatever text is configured, the result is a value or a ValidationError."""
        try:
            managed = ManagedBy(provider="IdP", manage_url=url)
        except ValidationError:
            return
        assert managed.manage_url is not None
        assert managed.manage_url.lower().startswith(("https://", "http://"))


class TestAccountManagement:
    def test_local_accounts_allow_every_action(self):
        """ENSPACE-managed accounts may change all their credentials."""
        local = AccountManagement.local()
        assert local.is_local
        for action in SensitiveAction:
            local.ensure_local(action)

    def test_managed_accounts_are_refused_with_where_to_go(self):
        """An SSO account's security change raises with provider, URL and action."""
        managed = AccountManagement.managed(
            "Microsoft Entra ID", manage_url="https://myaccount.microsoft.com/"
        )
        assert not managed.is_local
        with pytest.raises(ManagedExternallyError) as info:
            managed.ensure_local(SensitiveAction.CHANGE_PASSWORD)
        assert info.value.provider == "Microsoft Entra ID"
        assert info.value.manage_url == "https://myaccount.microsoft.com/"
        assert info.value.action == "security.change_password"
        assert info.value.code == "managed_externally"
        assert isinstance(info.value, PermissionError)

    def test_managed_without_url(self):
        """The URL is optional; the error then just names the provider."""
        with pytest.raises(ManagedExternallyError) as info:
            AccountManagement.managed("Okta").ensure_local("security.enable_two_factor")
        assert info.value.manage_url is None
        assert str(info.value) == "this account is managed by Okta: make this change"

    def test_managed_validates_its_url(self):
        """The convenience constructor applies the same URL rules."""
        with pytest.raises(ValidationError):
            AccountManagement.managed("Okta", manage_url="http://okta.example.com/")

    def test_identity_provider_actions(self):
        """Credential changes belong to the IdP; tokens, integrations and sessions do not."""
        assert {
            SensitiveAction.CHANGE_PASSWORD,
            SensitiveAction.ENABLE_TWO_FACTOR,
            SensitiveAction.DISABLE_TWO_FACTOR,
            SensitiveAction.REGENERATE_RECOVERY_CODES,
        } == IDENTITY_PROVIDER_ACTIONS
        assert SensitiveAction.CREATE_TOKEN not in IDENTITY_PROVIDER_ACTIONS
        assert SensitiveAction.SIGN_OUT_OTHER_SESSIONS not in IDENTITY_PROVIDER_ACTIONS
