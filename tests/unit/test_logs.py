"""Redaction of credentials in log records."""

from __future__ import annotations

import logging

import pytest

from shared.logs import RedactingFilter, redact

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
