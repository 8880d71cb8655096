"""Alembic environment of the app database, loaded by Alembic for every command.

Ledgerline runs it programmatically (``ledgerline.migrations``): the connection comes
in ``config.attributes["connection"]``, already inside the transaction that holds the
migration lock. There is no alembic.ini.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.dialects.postgresql import JSONB

from ledgerline import db
from ledgerline.migrations import VERSION_TABLE


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Autogenerate renders JSONB with a bare ``Text()`` it does not import; write it plainly."""
    if type_ == "type" and isinstance(obj, JSONB):
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return "postgresql.JSONB()"
    return False


config = context.config
connection = config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise RuntimeError(
        "run the app database migrations through `ledgerline db upgrade` (or ledgerline.db.upgrade), "
        "not the plain alembic command"
    )
context.configure(
    connection=connection,
    target_metadata=db.all_metadata(),
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite cannot ALTER most things: batch mode copies the table
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
