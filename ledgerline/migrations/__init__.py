"""Versioned schema of the app database (Alembic, configured in code: no alembic.ini).

Every table lives in :data:`ledgerline.db.metadata` (a family's own tables too: :func:`ledgerline.db.all_metadata`); the revisions in ``versions/``
bring a database from nothing (or from the unversioned schema older Ledgerline
releases created with ``metadata.create_all``) to that metadata. The version is kept
in the ``ledgerline_alembic_version`` table, so the app database never collides with
MLflow's or Airflow's own ``alembic_version`` should they share a database.
:func:`ledgerline.db.upgrade` (``ledgerline db upgrade``, and every first use of the
database in a process) runs them, under a lock, on Postgres and SQLite alike.

Adding revision 0002 (recipe)
    1. Change the tables in ``ledgerline/db.py``.
    2. ``make migration MSG="add pending feedback"`` writes
       ``versions/0002_add_pending_feedback.py`` by comparing ``db.metadata`` with a
       scratch SQLite database at the current head (``DB=postgresql://...`` compares
       with that database instead; it must be at head).
    3. Read and tidy the file: autogenerate misses renames (it sees a drop and an add,
       which loses data: use ``batch_op.alter_column(..., new_column_name=...)``) and
       needs a ``server_default`` or a data step for a new NOT NULL column on a table
       with rows. Operations come out in ``op.batch_alter_table`` blocks, which work on
       SQLite (copy the table) and Postgres (plain ALTER) alike; keep them that way.
    4. ``tests/integration/test_migrations.py`` fails until ``db.metadata`` and the
       migrated database agree, and checks that existing rows survive; add rows for
       the new tables or columns there.
    Never edit a revision that has been released: the baseline ``0001`` in particular
    is frozen (unversioned databases are checked against it).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config
    from alembic.script import ScriptDirectory

logger = logging.getLogger(__name__)

VERSION_TABLE = "ledgerline_alembic_version"
BASELINE = "0001"
HERE = Path(__file__).resolve().parent


class SchemaMismatch(Exception):
    """An unversioned database whose tables are not the baseline schema (raised as SchemaError by db)."""


def config(connection: sa.Connection | None = None) -> Config:
    """The Alembic configuration, built in code; ``connection`` is what env.py migrates."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config())


def head() -> str:
    """The newest revision."""
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the app database migrations have {len(heads)} heads ({', '.join(heads)}); merge them")
    return heads[0]


def is_known(revision: str) -> bool:
    """Whether this code has ``revision`` (a database migrated by a newer release has one it does not)."""
    from alembic.util import CommandError

    try:
        return script_directory().get_revision(revision) is not None
    except CommandError:
        return False


def migration_context(connection: sa.Connection) -> Any:
    """An Alembic MigrationContext on ``connection`` that knows our version table."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE, "compare_type": True})


def current(connection: sa.Connection) -> str | None:
    """The revision the database is at; None when it is unversioned (empty or created before migrations)."""
    rev = migration_context(connection).get_current_revision()
    return str(rev) if rev is not None else None


def baseline_schema() -> sa.MetaData:
    """The frozen tables of revision 0001."""
    module = script_directory().get_revision(BASELINE).module
    return module.schema()  # type: ignore[no-any-return]


def _describe(diff: Any) -> str:
    if isinstance(diff, list):  # column modifications come as a list of tuples
        return "; ".join(_describe(d) for d in diff)
    kind = diff[0]
    if kind in ("add_column", "remove_column"):
        what = "missing column" if kind == "add_column" else "unexpected column"
        return f"{what} {diff[2]}.{diff[3].name}"
    if kind.startswith("modify_"):
        return f"{diff[2]}.{diff[3]}: {kind[len('modify_'):]} is {diff[5]!r}, expected {diff[6]!r}"
    if kind in ("add_index", "remove_index"):
        what = "missing index" if kind == "add_index" else "unexpected index"
        return f"{what} {diff[1].name} on {diff[1].table.name}"
    return " ".join(str(part) for part in diff)


def adopt(connection: sa.Connection) -> list[str] | None:
    """Stamp an unversioned database at the baseline when its tables are the baseline's.

    Returns the baseline tables that were missing and got created (a database only
    serving or only the ledger had touched holds some of them); None when the database
    holds none of the app tables (nothing to adopt: the revisions create them).
    Raises :class:`SchemaMismatch` listing every difference when an existing table
    differs from the baseline: guessing which revision it is could lose data.
    """
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata

    baseline = baseline_schema()
    existing = set(sa.inspect(connection).get_table_names()) & set(baseline.tables)
    if not existing:
        return None
    missing = [name for name in baseline.tables if name not in existing]
    problems = []
    for diff in compare_metadata(migration_context(connection), baseline):
        kind = diff[0] if isinstance(diff, tuple) else ""
        if kind == "remove_table":  # not ours
            continue
        if kind == "add_table" and diff[1].name in missing:
            continue
        if kind == "add_index" and diff[1].table.name in missing:
            continue
        problems.append(_describe(diff))
    if problems:
        raise SchemaMismatch(
            f"the app database has Ledgerline's tables ({', '.join(sorted(existing))}) but no "
            f"{VERSION_TABLE} table, and they differ from the baseline schema {BASELINE}: "
            + "; ".join(problems)
            + ". Nothing was changed. Fix the tables by hand to match revision 0001 "
            "(ledgerline/migrations/versions/0001_baseline.py) or point LEDGERLINE_APP_DB_URL at a new database."
        )
    if missing:
        baseline.create_all(connection, tables=[baseline.tables[name] for name in missing])
    from alembic import command

    command.stamp(config(connection), BASELINE)
    logger.info("app database created before migrations: stamped at %s (created %s)", BASELINE, missing or "nothing")
    return missing


def upgrade(connection: sa.Connection) -> tuple[str | None, str, bool]:
    """Migrate to head inside the caller's transaction.

    Returns (revision before, revision after, whether an unversioned database was adopted).
    """
    from alembic import command

    before = current(connection)
    adopted = False
    if before is None:
        adopted = adopt(connection) is not None
    command.upgrade(config(connection), "head")
    after = current(connection)
    if after is None:  # pragma: no cover - alembic always stamps
        raise RuntimeError("the app database migrations ran but left no revision")
    return before, after, adopted


def next_revision_id() -> str:
    """Revisions are numbered 0001, 0002, ...: the next free number."""
    numbers = [int(m.group(1)) for p in (HERE / "versions").glob("*.py") if (m := re.match(r"(\d{4})_", p.name))]
    return f"{max(numbers, default=0) + 1:04d}"


def new_revision(connection: sa.Connection, message: str) -> Path:
    """Autogenerate the next revision from the difference between ``db.metadata`` and ``connection`` (at head)."""
    from alembic import command

    rev_id = next_revision_id()
    scripts = command.revision(config(connection), message=message, autogenerate=True, rev_id=rev_id)
    script = scripts[0] if isinstance(scripts, list) else scripts
    assert script is not None
    return Path(script.path)
