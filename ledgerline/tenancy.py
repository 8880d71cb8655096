"""Who is asking: the tenant, the key and its scope, resolved once per request.

This is the shared contract of multi-tenancy (issue 20). Serving resolves every request to a
:class:`Principal` (:func:`serving.state.principal_of`); the database isolates rows by
``principal.tenant`` (row-level security keyed on the per-transaction setting
:data:`TENANT_SETTING`); quotas count per ``principal.key_id`` and per ``principal.tenant``;
the ledger's actor is :meth:`Principal.actor`.

The keys of the environment (``LEDGERLINE_SERVING_API_KEYS`` and ``..._ADMIN_KEY``) stay the
single-tenant default: they belong to :data:`DEFAULT_TENANT`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Scope = Literal["read", "predict", "admin"]
#: A scope grants itself and every scope ranked below it: a ``predict`` key may also read model
#: information (as every API key could before tenants), an ``admin`` key may do everything.
SCOPE_RANK: dict[str, int] = {"read": 0, "predict": 1, "admin": 2}
SCOPES: tuple[Scope, ...] = ("read", "predict", "admin")

#: The tenant the environment's keys, SQLite databases and every row written before tenants belong to.
DEFAULT_TENANT = "default"
#: The Postgres setting (``SET LOCAL``) that row-level security policies compare ``tenant_id`` with.
TENANT_SETTING = "ledgerline.tenant"

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def grants(scope: str, need: str) -> bool:
    """Whether a key of ``scope`` may do what needs ``need``."""
    return SCOPE_RANK[scope] >= SCOPE_RANK[need]


def check_tenant_name(name: str) -> str:
    """The name, or ValueError saying what a tenant name may hold."""
    if not TENANT_NAME.match(name or ""):
        raise ValueError(
            f"tenant name {name!r} is not valid: use 1-63 lower-case letters, digits, '-' or '_', starting "
            "with a letter or digit (e.g. acme-bank)"
        )
    return name


@dataclass(frozen=True)
class Limits:
    """Token-bucket rates; None means no limit of that kind."""

    requests_per_second: float | None = None
    rows_per_second: float | None = None


@dataclass(frozen=True)
class Principal:
    """A resolved request: whose it is and what it may do."""

    tenant: str
    key_id: str  # a stable, non-secret id of the key (shown in `keys list`, the ledger and metrics)
    scope: Scope
    tenant_limits: Limits = field(default_factory=Limits)
    key_limits: Limits = field(default_factory=Limits)

    def actor(self) -> str:
        """Who did it, as the ledger records it: ``key:<key_id>@<tenant>``."""
        return f"key:{self.key_id}@{self.tenant}"
