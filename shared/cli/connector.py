"""``python -m shared connector``: the custom connector's two files, for ``paconn create``."""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path
from typing import Any, TextIO

from shared.api.connector import api_properties
from shared.api.openapi import document, security_for
from shared.api.routes import ROUTES
from shared.cli.common import EXIT_OK
from shared.core.errors import ConfigError
from shared.core.settings import WEBSITE_HOSTNAME, load, parse_public_url

DEFINITION_FILE = "apiDefinition.swagger.json"
PROPERTIES_FILE = "apiProperties.json"


def register(commands: Any) -> None:
    """Add the ``connector`` command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "connector",
        help="write the custom connector's apiDefinition.swagger.json and apiProperties.json",
        description="Write the Power Platform custom connector for this deployment: its OpenAPI "
        "document and its properties (Entra ID sign-in for the API, the next-link policy), "
        "generated from the route table, ready for `paconn create` or the portal's import.",
    )
    parser.add_argument(
        "--url",
        metavar="ORIGIN",
        help="the deployment's public origin (default: API_PUBLIC_URL, else "
        "https://$WEBSITE_HOSTNAME)",
    )
    parser.add_argument(
        "--connector-client-id",
        metavar="CLIENT_ID",
        help="client id of the connector's own app registration (the one with the delegated "
        "permission access_as_user on the API); default: left empty, filled in the portal",
    )
    parser.add_argument("--out", metavar="DIR", default=".", help="where to write the two files")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Write both files (no network I/O: only the settings are read)."""
    import os

    settings = load()
    url = args.url or settings.http.public_url
    if not url and os.environ.get(WEBSITE_HOSTNAME):
        url = f"https://{os.environ[WEBSITE_HOSTNAME].strip()}"
    if not url:
        raise ConfigError("--url: give the deployment's origin (or set API_PUBLIC_URL)")
    try:
        base = parse_public_url(url.strip())
    except ValueError as exc:
        raise ConfigError(f"--url: {exc}") from None
    client_id = args.connector_client_id
    if client_id is not None:
        try:
            client_id = str(uuid.UUID(client_id))
        except ValueError:
            raise ConfigError("--connector-client-id: must be a GUID") from None
    security = security_for(settings)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        DEFINITION_FILE: document(base, security, routes=ROUTES),
        PROPERTIES_FILE: api_properties(security, connector_client_id=client_id),
    }
    for name, data in files.items():
        (folder / name).write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")
        out.write(f"wrote {folder / name}\n")
    out.write(
        f"create it with: paconn create --api-def {folder / DEFINITION_FILE} "
        f"--api-prop {folder / PROPERTIES_FILE}"
        + (" --secret <the connector app's client secret>\n" if not security.key_mode else "\n")
    )
    return EXIT_OK
