"""The local cloud's state and how it is seeded.

`World` is everything a reset puts back: the Entra directory (tenants, the app, its secrets,
certificate, federated credential, consents, managed identities, API app roles), the Key Vault,
the incident store and the users. `seed_world` builds it deterministically from the config's
seed and the clock; the identifiers come from the seed alone (`derive_ids`), the credentials
(`Credentials`) are random per emulator and kept across resets, so a client configured once
keeps working after `POST /_emulator/reset`.
"""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from emulator import approles, data, delegated, entra, keyvault
from emulator.config import EmulatorConfig
from emulator.store import IncidentStore

SECRET_NAME = "defender-client-secret"
# Key Vault exposes a certificate's key and chain as a secret of the same name (PEM or PKCS#12).
CERT_PEM_NAME = "defender-client-cert"
CERT_PFX_NAME = "defender-client-cert-pfx"


@dataclass(frozen=True, slots=True)
class Ids:
    """Deterministic identifiers derived from the seed."""

    tenant_ids: tuple[str, ...]
    client_id: str
    service_principals: tuple[str, ...]
    system_identity: entra.ManagedIdentity
    user_identity: entra.ManagedIdentity
    # a Logic App's user-assigned identity that calls the Defender Bridge API (emulator.approles)
    logic_identity: entra.ManagedIdentity
    automation_client_id: str
    automation_object_id: str


def derive_ids(config: EmulatorConfig) -> Ids:
    """The tenants, app, identities and API client of a seed (the same for every run)."""
    rng = random.Random(f"emulator-ids:{config.seed}")
    tenants = tuple(data.make_guid(rng) for _ in range(config.customer_tenants + 1))
    client_id = data.make_guid(rng)
    principals = tuple(data.make_guid(rng) for _ in tenants)
    sub = data.make_guid(rng)
    rg = f"/subscriptions/{sub}/resourceGroups/rg-defender-bridge/providers"
    system = entra.ManagedIdentity(
        data.make_guid(rng),
        data.make_guid(rng),
        f"{rg}/Microsoft.Web/sites/func-defender-bridge",
        system_assigned=True,
    )
    user = entra.ManagedIdentity(
        data.make_guid(rng),
        data.make_guid(rng),
        f"{rg}/Microsoft.ManagedIdentity/userAssignedIdentities/id-no-vault-access",
        system_assigned=False,
    )
    # drawn after the others, so the identifiers above stay what they were for a seed
    logic = entra.ManagedIdentity(
        data.make_guid(rng),
        data.make_guid(rng),
        f"{rg}/Microsoft.ManagedIdentity/userAssignedIdentities/id-logic-app",
        system_assigned=False,
    )
    automation = (data.make_guid(rng), data.make_guid(rng))
    return Ids(tenants, client_id, principals, system, user, logic, *automation)


def new_secret_value() -> str:
    """A fresh client secret value, random per call."""
    # Entra client secrets look like `abc8Q~<34 chars>`.
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.~"
    body = "".join(secrets.choice(alphabet) for _ in range(34))
    return f"{secrets.token_hex(2)[:3]}8Q~{body}"


@dataclass(frozen=True, slots=True)
class AppCert:
    """The app's self-signed certificate (registered in Entra, stored in Key Vault)."""

    pem: str  # private key + certificate, as Key Vault returns a PEM certificate secret
    pfx_b64: str  # base64 PKCS#12, as Key Vault returns a PFX certificate secret
    certificate: x509.Certificate

    @staticmethod
    def generate(client_id: str) -> AppCert:
        """A new key and certificate for the app `client_id`."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"defender-bridge-{client_id}")])
        start = datetime(2026, 1, 1, tzinfo=UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        pfx = pkcs12.serialize_key_and_certificates(
            b"defender-bridge", key, cert, None, serialization.NoEncryption()
        )
        return AppCert(key_pem + cert_pem, base64.b64encode(pfx).decode(), cert)

    @property
    def thumbprint(self) -> str:
        """SHA-1 thumbprint (hex, upper case), as MSAL's PEM credential wants it."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()

    def registration(self) -> entra.AppCertificate:
        """The certificate as the app registration holds it (thumbprints and public key)."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)

        def b64url(digest: bytes) -> str:
            return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

        return entra.AppCertificate(
            x5t=b64url(hashlib.sha1(der, usedforsecurity=False).digest()),
            x5t_s256=b64url(hashlib.sha256(der).digest()),
            public_key=self.certificate.public_key(),
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """The credentials of one emulator's lifetime (random per run, kept across resets)."""

    client_secret: str  # the app's seeded client secret
    automation_secret: str  # the "SOC automation" app's client secret
    cert: AppCert

    @staticmethod
    def generate(client_id: str) -> Credentials:
        """Fresh secrets and a certificate for the app `client_id`."""
        return Credentials(new_secret_value(), new_secret_value(), AppCert.generate(client_id))


@dataclass
class World:
    """The emulator's live state; a reset replaces it with a freshly seeded one."""

    directory: entra.Directory
    vault: keyvault.Vault
    store: IncidentStore
    seeded_at: datetime
    users: delegated.DelegatedState


def seed_world(
    config: EmulatorConfig,
    ids: Ids,
    credentials: Credentials,
    now: datetime,
    *,
    late_arrival_seconds: float,
) -> World:
    """The seeded state at `now`.

    Raises:
        ValueError: `config.device_code_auto_user` names no seeded user.
    """
    tenants: dict[str, entra.Tenant] = {}
    for index, tid in enumerate(ids.tenant_ids):
        org = data.org_name(index)
        tenants[tid] = entra.Tenant(tid, f"{org}.onmicrosoft.com", org.capitalize())
    secret_created = now - timedelta(days=30)
    secret = entra.ClientSecret(
        "3f1c2a9e-0000-4000-8000-000000000001",
        credentials.client_secret,
        secret_created,
        secret_created + timedelta(days=config.secret_lifetime_days),
    )
    cert = credentials.cert
    directory = entra.Directory(
        tenants=tenants,
        home_tenant_id=ids.tenant_ids[0],
        client_id=ids.client_id,
        app_display_name="Defender Bridge",
        secrets=[secret],
        consents={tid: dict(entra.DEFAULT_ROLES) for tid in ids.tenant_ids},
        service_principals=dict(zip(ids.tenant_ids, ids.service_principals, strict=True)),
        identities={
            ids.system_identity.client_id: ids.system_identity,
            ids.user_identity.client_id: ids.user_identity,
            ids.logic_identity.client_id: ids.logic_identity,
        },
        certificates=[cert.registration()],
        # Managed identity as a federated credential of the app (no secret at all): only a
        # user-assigned identity can be one (entra.EntraService._check_assertion).
        federated=[
            entra.FederatedCredential(
                entra.federated_issuer(ids.tenant_ids[0]), ids.user_identity.principal_id
            )
        ],
    )
    vault = keyvault.Vault("defender-bridge-kv", "westeurope", ids.tenant_ids[0])
    vault.set_secret(SECRET_NAME, secret.value, secret.created, secret.expires)
    cert_expiry = cert.certificate.not_valid_after_utc
    vault.set_secret(CERT_PEM_NAME, cert.pem, secret.created, cert_expiry, "application/x-pem-file")
    vault.set_secret(
        CERT_PFX_NAME, cert.pfx_b64, secret.created, cert_expiry, "application/x-pkcs12"
    )
    vault.readers.add(ids.system_identity.principal_id)
    store = IncidentStore(
        seed=config.seed, seeded_at=now, late_arrival_seconds=late_arrival_seconds
    )
    for index, tid in enumerate(ids.tenant_ids):
        generator = data.TenantGenerator(tid, index, config.seed)
        count = config.home_incidents if index == 0 else config.customer_incidents
        store.add_tenant(tid, generator, data.seed_incidents(generator, count, now))
    users = delegated.DelegatedState(
        delegated.seed_users(config.seed, tenants), delegated.caller_client_id(config.seed)
    )
    if config.device_code_auto_user:
        selector = config.device_code_auto_user
        user = users.find_user(selector) or users.find_user(
            f"{selector}@{tenants[ids.tenant_ids[0]].domain}", ids.tenant_ids[0]
        )
        if user is None:
            raise ValueError(f"device_code_auto_user: no user '{config.device_code_auto_user}'")
        users.auto[user.tenant_id] = (user.oid, True)
    automation = entra.ApiClient(
        ids.automation_client_id,
        credentials.automation_secret,
        ids.automation_object_id,
        "SOC automation",
    )
    approles.seed(directory, users, automation, ids.logic_identity)
    return World(directory, vault, store, now, users)
