"""Blob containers made on first use, for the adapters that write to them (``jobs``, ``push``).

Apart from the package's ``__init__`` so that importing any module of this wing (its SDK-free
``values`` above all) loads no SDK (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient


def create_container_if_not_exists(container: ContainerClient) -> None:
    """Create the blob container unless it is there already: the blob counterpart of the
    table SDK's ``create_table_if_not_exists``. Other Azure errors propagate, for the caller to
    translate."""
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        container.create_container()
