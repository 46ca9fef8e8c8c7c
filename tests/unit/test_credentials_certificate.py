"""Key Vault certificate secrets (PFX and PEM) become MSAL certificate credentials in memory."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from shared.core.errors import SecretAccessError
from shared.credentials.certificate import load_certificate

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _cert(days: int = 90) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "defender-bridge")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(key: rsa.RSAPrivateKey, *certs: x509.Certificate) -> str:
    text = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return text + "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def test_pfx_and_pem_of_one_certificate_agree() -> None:
    """Both Key Vault formats give the same thumbprint, expiry and an MSAL credential."""
    key, cert = _cert()
    pfx = pkcs12.serialize_key_and_certificates(
        b"app", key, cert, None, serialization.NoEncryption()
    )
    from_pfx = load_certificate(
        base64.b64encode(pfx).decode(), "application/x-pkcs12", name="app-cert"
    )
    _, other = _cert()
    from_pem = load_certificate(_pem(key, other, cert), "application/x-pem-file", name="app-cert")

    assert from_pfx.thumbprint_sha256 == from_pem.thumbprint_sha256
    assert from_pfx.thumbprint_sha256 == cert.fingerprint(hashes.SHA256()).hex().upper()
    assert from_pfx.not_after == NOW + timedelta(days=90)
    credential = from_pem.msal_credential()
    assert set(credential) == {"private_key", "public_certificate"}
    assert "PRIVATE KEY" in credential["private_key"]
    assert "PRIVATE KEY" not in repr(from_pem)


def test_content_type_is_optional() -> None:
    """Without a content type, PEM text and base64 PFX are told apart by their shape."""
    key, cert = _cert()
    pfx = pkcs12.serialize_key_and_certificates(None, key, cert, None, serialization.NoEncryption())
    assert load_certificate(base64.b64encode(pfx).decode(), None, name="c").thumbprint_sha1
    assert load_certificate(_pem(key, cert), None, name="c").thumbprint_sha1


@pytest.mark.parametrize(
    ("value", "content_type", "message"),
    [
        ("not base64 ***", None, "neither PEM nor base64 PFX"),
        (base64.b64encode(b"junk").decode(), "application/x-pkcs12", "not a readable PFX"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", None, "private key"),
    ],
)
def test_unusable_items_name_the_certificate(
    value: str, content_type: str | None, message: str
) -> None:
    """A broken item is a SecretAccessError naming the Key Vault item, never its value."""
    with pytest.raises(SecretAccessError, match=message) as info:
        load_certificate(value, content_type, name="app-cert")
    assert "app-cert" in str(info.value)
    assert value not in str(info.value)


def test_pem_without_the_matching_certificate_is_refused() -> None:
    """The leaf must match the private key."""
    key, _ = _cert()
    _, other = _cert()
    with pytest.raises(SecretAccessError, match="no certificate matching"):
        load_certificate(_pem(key, other), None, name="app-cert")
