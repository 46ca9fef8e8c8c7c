"""Redaction of credentials in log records."""

from __future__ import annotations

import logging

import pytest

from shared.core.logs import RedactingFilter, redact

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2FwaSJ9.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {JWT}", JWT),
        (f"token {JWT} issued", JWT),
        ("client_secret=s3cr3t-Value&scope=x", "s3cr3t-Value"),
        ('{"access_token": "opaque-token-123"}', "opaque-token-123"),
        ("DefaultEndpointsProtocol=https;AccountKey=a2V5a2V5a2V5;", "a2V5a2V5a2V5"),
        ("https://x.blob.core.windows.net/c/b?sv=1&sig=abcDEF%2B", "abcDEF%2B"),
        ("client_assertion=eyJx.eyJy.zzz", "eyJy"),
    ],
)
def test_redact_masks_credentials(text: str, secret: str) -> None:
    """Each kind of credential disappears from the text."""
    assert secret not in redact(text)
    assert "***" in redact(text)


def test_filter_rewrites_message_and_args() -> None:
    """The filter renders %-args first, so a secret passed as an argument is masked too."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s", (f"Bearer {JWT}",), None)
    RedactingFilter().filter(record)
    assert JWT not in record.getMessage()


def test_plain_text_is_untouched() -> None:
    """Ordinary messages pass unchanged."""
    text = "tenant 1111 ingested 12 incidents in 2 pages"
    assert redact(text) == text


#: the secret in each line must vanish (forms seen in SDK debug logs, exceptions, URLs)
GAPS = [
    # percent-encoded query strings and JSON (a URL logged inside another URL or a body)
    ("callback=https%3A%2F%2Fx.logic.azure.com%2Fw%3Fsp%3D%252F%26sig%3DAbCdEf0123", "AbCdEf0123"),
    ("u=https%3A%2F%2Fh%2Fp%3Fsig%3DAbCdEf0123%26sv%3D1", "AbCdEf0123"),
    ("body %7B%22access_token%22%3A%22opaque-123%22%7D", "opaque-123"),
    ("%22client_secret%22%3A%20%22s3cr3t-xyz%22", "s3cr3t-xyz"),
    ("client_secret%3Ds3cr3t-xyz%26scope%3Dx", "s3cr3t-xyz"),
    ("https://app/api/x?code%3DfunctionKey123", "functionKey123"),
    # header forms (as text and as a Python dict repr)
    ("x-functions-key: functionKey123", "functionKey123"),
    ("{'x-functions-key': 'functionKey123', 'Accept': '*/*'}", "functionKey123"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("{'Authorization': 'SharedKey acct:c2lnbmF0dXJl'}", "c2lnbmF0dXJl"),
    ('"authorization": "Bearer opaque-not-a-jwt"', "opaque-not-a-jwt"),
    ("X-IDENTITY-HEADER: 5f3c1d2e-identity-secret", "5f3c1d2e-identity-secret"),
    ("{'X-IDENTITY-HEADER': '5f3c1d2e-identity-secret'}", "5f3c1d2e-identity-secret"),
    ("X-Defender-Signature: sha256=9f86d081884c7d65", "9f86d081884c7d65"),
    ("Ocp-Apim-Subscription-Key: 0123456789abcdef", "0123456789abcdef"),
    ("Cookie: session=abc123secret", "abc123secret"),
    # setting-shaped secrets
    ("API_SIGNING_KEY=test-signing-key-0123456789abcdef", "test-signing-key-0123456789abcdef"),
    ("export API_SIGNING_KEY='quoted-signing-key-value'", "quoted-signing-key-value"),
    ("DEFENDER_CLIENT_SECRET=s3cr3t-xyz", "s3cr3t-xyz"),
    ("IDENTITY_HEADER=5f3c1d2e-identity-secret", "5f3c1d2e-identity-secret"),
    ('"API_SIGNING_KEY": "json-signing-key-value"', "json-signing-key-value"),
    ("DATA_STORAGE=UseDevelopmentStorage=true;AccountKey=a2V5a2V5", "a2V5a2V5"),
    ("Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey=c2FrLXZhbHVl", "c2FrLXZhbHVl"),
    # other shapes
    ("https://user:p4ssw0rd@proxy.example:8080/", "p4ssw0rd"),
    ("sv=2024-01-01&se=2026&sig=AbCdEf0123", "AbCdEf0123"),
    ("sig=AbCdEf0123 at the start", "AbCdEf0123"),
    ('{"secret": "subscription-secret-value"}', "subscription-secret-value"),
    (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    ),
    ("refresh_token=0.ARoA-opaque", "0.ARoA-opaque"),
    ("id_token=opaque-id-token", "opaque-id-token"),
]


@pytest.mark.parametrize(("text", "secret"), GAPS)
def test_redact_covers_encoded_header_and_setting_forms(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out, out
    assert "***" in out


@pytest.mark.parametrize(
    "text",
    [
        "listed 50 incidents (status=active, code 200) for tenant 1111",
        "GET https://graph.microsoft.com/v1.0/security/incidents?$top=50&$filter=x 200",
        "slice 2026-11-01T00:00:00Z - 2026-11-02T00:00:00Z: 49 incidents",
        "API_SIGNING_KEY is not set: push answers 503",
        '429 {"error":{"code":"429","message":"API calls quota exceeded!"}}',
        "KEY_VAULT_URL=https://kv.vault.azure.net DEFENDER_CLIENT_SECRET_NAME=defender-secret",
    ],
)
def test_redaction_leaves_ordinary_lines_alone(text: str) -> None:
    assert redact(text) == text


def test_filter_masks_the_exception_itself_for_handlers_that_read_it() -> None:
    """Handlers that send the exception as data (not the formatted text) see it masked too."""
    import sys
    import traceback

    url = "https://h/api/x?code=" + "functionKey123"  # the source line shows no secret
    try:
        raise ConnectionError(f"GET {url} failed")
    except ConnectionError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    RedactingFilter().filter(record)
    assert record.exc_info is not None
    text = "".join(traceback.format_exception(*record.exc_info))
    assert "functionKey123" not in text and "functionKey123" not in (record.exc_text or "")
    assert record.exc_info[0] is not None and record.exc_info[0].__name__ == "ConnectionError"
    assert "code=***" in text
