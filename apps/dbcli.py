"""``ledgerline db upgrade|current|revision``: the app database's schema version.

``upgrade`` and ``current`` work on ``LEDGERLINE_APP_DB_URL`` (or ``--url``);
``revision`` is for developers changing ``ledgerline/db.py`` (``make migration MSG=...``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ledgerline.errors import LedgerlineError

T = TypeVar("T")


def _url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    from ledgerline.settings import Settings

    return Settings().resolved_app_db_url()


def _reaching(url: str, work: Callable[[], T]) -> T:
    """Run ``work``; a bad URL or an unreachable server becomes one clear line."""
    import sqlalchemy as sa

    try:
        display = sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError as exc:
        raise LedgerlineError(
            f"the app database URL {url!r} is not a SQLAlchemy URL (e.g. sqlite:///app.db or "
            "postgresql+psycopg2://user@host/db); fix LEDGERLINE_APP_DB_URL or --url"
        ) from exc
    try:
        return work()
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.NoSuchModuleError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise LedgerlineError(
            f"cannot reach the app database at {display}: {reason}; start it or fix LEDGERLINE_APP_DB_URL"
        ) from exc


def cmd_upgrade(args: argparse.Namespace) -> int:
    from ledgerline import db

    url = _url(args)
    done = _reaching(url, lambda: db.upgrade(url))
    if done.adopted:
        print(f"adopted the unversioned app database as revision 0001, then upgraded to {done.after}")
    elif done.changed:
        print(f"upgraded the app database from {done.before or 'empty'} to {done.after}")
    else:
        print(f"the app database is already at {done.after} (head)")
    return 0


def cmd_current(args: argparse.Namespace) -> int:
    from ledgerline import db

    url = _url(args)
    rev = _reaching(url, lambda: db.current_revision(url))
    print(rev or "none")
    head = db.head_revision()
    if rev != head:
        print(f"the newest revision is {head}: run `ledgerline db upgrade`", file=sys.stderr)
    return 0


@contextmanager
def _scratch_sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="ledgerline-migration-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'head.db'}"


def cmd_revision(args: argparse.Namespace) -> int:
    from ledgerline import db, migrations

    message = args.message.strip()
    if not message:
        raise LedgerlineError('say what the revision does: ledgerline db revision "add pending feedback"')

    def generate(url: str) -> Path:
        engine = db.make_engine(url)
        try:
            with engine.begin() as conn:
                rev = migrations.current(conn)
                if rev != migrations.head():
                    raise LedgerlineError(
                        f"{url} is at {rev or 'no revision'}, not at head {migrations.head()}: "
                        "run `ledgerline db upgrade --url ...` on it first"
                    )
                return migrations.new_revision(conn, message)
        finally:
            engine.dispose()

    if args.url:
        path = _reaching(args.url, lambda: generate(args.url))
    else:
        with _scratch_sqlite() as url:
            db.upgrade(url)
            path = generate(url)
    with _scratch_sqlite() as url:  # a revision that does not even apply to an empty database is caught now
        try:
            db.upgrade(url)
        except Exception as exc:
            raise LedgerlineError(f"wrote {path}, but it fails on an empty SQLite database: {exc!r}; fix it") from exc
    print(f"wrote {path}: read it, fix renames and NOT NULL columns, and add rows for it to tests/integration/test_migrations.py")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("db", help="the app database's schema: upgrade, current revision")
    dbsub = p.add_subparsers(dest="db_command", required=True)

    up = dbsub.add_parser("upgrade", help="migrate the app database to the newest revision (safe to repeat)")
    up.add_argument("--url", help="SQLAlchemy URL (default: LEDGERLINE_APP_DB_URL, else the demo's SQLite file)")
    up.set_defaults(func=cmd_upgrade)

    cur = dbsub.add_parser("current", help="print the app database's revision ('none' when unversioned)")
    cur.add_argument("--url", help="SQLAlchemy URL (default: LEDGERLINE_APP_DB_URL, else the demo's SQLite file)")
    cur.set_defaults(func=cmd_current)

    rev = dbsub.add_parser("revision", help="developers: autogenerate the next revision from ledgerline/db.py")
    rev.add_argument("message", help='what it does, e.g. "add pending feedback"')
    rev.add_argument("--url", help="compare with this database at head (default: a scratch SQLite database)")
    rev.set_defaults(func=cmd_revision)
