"""Turns a Key Vault certificate's secret (PFX or PEM) into MSAL's certificate credential.

Key Vault keeps the private key of a certificate in the secret of the same name, as base64 PFX
(content type ``application/x-pkcs12``) or as PEM with the key and the certificate chain
(``application/x-pem-file``):
https://learn.microsoft.com/azure/key-vault/certificates/about-certificates#composition-of-a-certificate
Everything happens in memory: the key is never written to disk, and no ``repr`` shows it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from shared.core.errors import SecretAccessError

PFX_CONTENT_TYPE = "application/x-pkcs12"
PEM_CONTENT_TYPE = "application/x-pem-file"


@dataclass(frozen=True, slots=True)
class CertificateCredential:
    """A private key and its certificate, ready for MSAL.

    ``thumbprint_sha256`` is what Entra shows as the certificate's SHA-256 thumbprint;
    ``not_after`` is when the certificate stops being accepted.
    """

    private_key_pem: str = field(repr=False)
    certificate_pem: str
    thumbprint_sha1: str
    thumbprint_sha256: str
    not_after: datetime

    def msal_credential(self) -> dict[str, Any]:
        """MSAL's ``client_credential`` for this certificate.

        Giving ``public_certificate`` without ``thumbprint`` makes MSAL (>= 1.35) sign the
        assertion with PS256 and an ``x5t#S256`` header, the form Microsoft recommends, instead
        of RS256 with a SHA-1 ``x5t``:
        https://learn.microsoft.com/entra/identity-platform/certificate-credentials
        """
        return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}


def load_certificate(value: str, content_type: str | None, *, name: str) -> CertificateCredential:
    """Parse a certificate's secret as Key Vault returns it.

    Args:
        value: the secret's value (base64 PFX, or PEM text).
        content_type: the secret's content type, when Key Vault gave one.
        name: the Key Vault name, for messages.

    Raises:
        SecretAccessError: the value is not a usable certificate with an RSA or EC private key.
    """
    is_pem = "-----BEGIN" in value
    if content_type == PFX_CONTENT_TYPE or (content_type != PEM_CONTENT_TYPE and not is_pem):
        key, cert = _from_pfx(value, name)
    else:
        key, cert = _from_pem(value, name)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SecretAccessError(
            f"Key Vault certificate '{name}' has a {type(key).__name__} key; Entra ID accepts RSA"
        )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return CertificateCredential(
        private_key_pem=key_pem,
        certificate_pem=cert_pem,
        thumbprint_sha1=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - x5t
        thumbprint_sha256=cert.fingerprint(hashes.SHA256()).hex().upper(),
        not_after=cert.not_valid_after_utc.astimezone(UTC),
    )


def _from_pfx(value: str, name: str) -> tuple[Any, x509.Certificate]:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretAccessError(
            f"Key Vault certificate '{name}' is neither PEM nor base64 PFX"
        ) from None
    try:
        # Key Vault exports PFX without a password.
        key, cert, _chain = pkcs12.load_key_and_certificates(raw, None)
    except ValueError:
        raise SecretAccessError(
            f"Key Vault certificate '{name}' is not a readable PFX (a password-protected PFX "
            "is not supported: import it into Key Vault as a certificate)"
        ) from None
    if key is None or cert is None:
        raise SecretAccessError(
            f"Key Vault certificate '{name}' has no private key or no certificate; the key "
            "must be exportable"
        )
    return key, cert


def _from_pem(value: str, name: str) -> tuple[Any, x509.Certificate]:
    data = value.encode("ascii", errors="ignore")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SecretAccessError(
            f"Key Vault certificate '{name}' holds no readable unencrypted private key in PEM"
        ) from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    public = key.public_key()
    # The PEM may hold the chain too: the leaf is the one matching the private key.
    for cert in certs:
        if cert.public_key() == public:
            return key, cert
    raise SecretAccessError(
        f"Key Vault certificate '{name}' holds no certificate matching its private key"
    )
