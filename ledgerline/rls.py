"""Row-level security: the database, not only the code, keeps one tenant's rows from another.

Every tenant-owned table has a ``tenant_id`` column and a policy that shows (and admits) only the rows
whose ``tenant_id`` equals the transaction's setting :data:`ledgerline.tenancy.TENANT_SETTING`. Policies
do not bind a table's owner or a superuser, so a request's queries run under the role
:data:`TENANT_ROLE` (``SET LOCAL ROLE``, no BYPASSRLS) once :func:`scope_connection` is called: within
that transaction a query that forgot its ``WHERE tenant_id = ...`` still sees only the caller's rows,
and one with no tenant set sees nothing. Platform jobs (monitoring, training) keep the owner's view and
filter by tenant explicitly. SQLite has no row-level security: it stays single-tenant.
"""

from __future__ import annotations

import sqlalchemy as sa

from ledgerline.tenancy import TENANT_SETTING

TENANT_ROLE = "ledgerline_tenant"
POLICY = "tenant_isolation"


def scope_connection(conn: sa.Connection, tenant: str) -> None:
    """Confine the rest of ``conn``'s current transaction to ``tenant``'s rows (Postgres; no-op on SQLite).

    Call it inside ``engine.begin()`` (the settings are ``LOCAL``: they end with the transaction)."""
    if conn.dialect.name != "postgresql":
        return
    conn.exec_driver_sql(f"SET LOCAL ROLE {TENANT_ROLE}")
    conn.execute(sa.text("SELECT set_config(:name, :tenant, true)"), {"name": TENANT_SETTING, "tenant": tenant})


def role_ddl() -> list[str]:
    """Create :data:`TENANT_ROLE` if it is missing (idempotent; roles are cluster-wide)."""
    return [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{TENANT_ROLE}') "
        f"THEN CREATE ROLE {TENANT_ROLE} NOLOGIN; END IF; END $$",
        f"DO $$ BEGIN EXECUTE format('GRANT {TENANT_ROLE} TO %I', current_user); END $$",
    ]


def table_ddl(table: str) -> list[str]:
    """Enable the tenant policy on ``table`` (which has a ``tenant_id`` column) and let the role use it."""
    expr = f"tenant_id = current_setting('{TENANT_SETTING}', true)"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS {POLICY} ON {table}",
        f"CREATE POLICY {POLICY} ON {table} USING ({expr}) WITH CHECK ({expr})",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {TENANT_ROLE}",
    ]
