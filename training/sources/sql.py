"""The ``sql`` source: a query on a SQLAlchemy URL or an Airflow Connection, with the window as bound
parameters (``:start``, ``:end``: UTC datetimes, end exclusive; ``:ds``: the window's last day as
``YYYY-MM-DD``), read in chunks of ``chunksize`` rows. A password never appears in a message or log."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from ledgerline.errors import LedgerlineError

if TYPE_CHECKING:
    import pandas as pd

    from training.sources.config import SqlSource
    from training.sources.window import Interval

logger = logging.getLogger(__name__)

#: Airflow's connection types -> SQLAlchemy dialects, where they differ
_SCHEMES = {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql", "sqlite": "sqlite", "mssql": "mssql"}
CONNECT_TIMEOUT_SECONDS = 10


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (SQLAlchemy's rendering); unparseable: the scheme only."""
    import sqlalchemy as sa

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any URL it cannot parse is shown by its scheme alone
        return url.split("://", 1)[0] + "://..." if "://" in url else "<url>"


def check_url(url: str, where: str) -> None:
    import sqlalchemy as sa

    try:
        sa.make_url(url)
    except Exception as exc:  # noqa: BLE001 - ArgumentError and friends
        raise LedgerlineError(f"{where}: url {masked_url(url)} is not a SQLAlchemy URL (e.g. postgresql://user@host/db)") from exc


def _env_name(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper().replace("-", "_").replace(".", "_")


def _from_json(text: str) -> str:
    """An Airflow connection in its JSON form -> a URL."""
    return _from_fields(json.loads(text))


def _from_fields(data: dict[str, Any]) -> str:
    """An Airflow connection's fields (conn_type, login, password, host, port, schema) -> a URL; its extras
    (Airflow's own options) are not passed to the driver."""
    import sqlalchemy as sa

    kind = str(data.get("conn_type") or "postgres")
    return sa.URL.create(
        _SCHEMES.get(kind, kind),
        username=data.get("login"),
        password=data.get("password"),
        host=data.get("host"),
        port=data.get("port"),
        database=data.get("schema"),
    ).render_as_string(hide_password=False)


def _sqlalchemy(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    base, plus, driver = scheme.partition("+")
    return f"{_SCHEMES.get(base, base)}{plus}{driver}{sep}{rest}" if sep else uri


def connection_url(source: SqlSource) -> str:
    """The source's SQLAlchemy URL: its ``url``, else its Airflow Connection (inside an Airflow task) or
    the environment's ``AIRFLOW_CONN_<ID>`` (a URI or Airflow's JSON form)."""
    if source.url:
        return source.url
    conn_id = source.conn_id or ""
    env = os.environ.get(_env_name(conn_id))
    if env:
        text = env.strip()
        return _from_json(text) if text.startswith("{") else _sqlalchemy(text)
    if os.environ.get("AIRFLOW_CTX_DAG_ID"):  # inside an Airflow task: its Connections (secrets backends too)
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        fields = ("conn_type", "login", "password", "host", "port", "schema")
        return _from_fields({f: getattr(conn, f, None) for f in fields})
    raise LedgerlineError(
        f"connection '{conn_id}' is not defined: outside Airflow set {_env_name(conn_id)}=postgresql://user:password@host/db"
    )


def read_sql(source: SqlSource, interval: Interval) -> pd.DataFrame:
    """The query's rows for ``interval``; errors propagate (the caller names the source and the window)."""
    import pandas as pd
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    url = connection_url(source)
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None:
        # SQLAlchemy 2.1 gives a bare postgresql:// (and an Airflow postgres:// connection) psycopg 3; the lock
        # file ships psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg2")
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    engine = sa.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    statement = sa.text(source.query)
    offered = {"start": interval.start, "end": interval.end, "ds": interval.ds.isoformat()}
    params = {k: v for k, v in offered.items() if k in statement._bindparams}  # noqa: SLF001 - the names it binds
    unknown = sorted(set(statement._bindparams) - set(offered))  # noqa: SLF001
    if unknown:
        raise LedgerlineError(f"the query binds {[':' + u for u in unknown]}; it may use :start, :end and :ds only")
    logger.info("reading %s for %s (chunks of %d rows)", masked_url(url), interval.label(), source.chunksize)
    try:
        with engine.connect() as conn:
            chunks = list(pd.read_sql(statement, conn, params=params, chunksize=source.chunksize))
    finally:
        engine.dispose()
    if not chunks:
        return pd.DataFrame()
    frame = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
    return frame.infer_objects()  # a chunk of only NULLs left a column as objects


def clean_message(message: str, source: SqlSource) -> str:
    """A driver's message without any password of the source's URL in it."""
    try:
        url = connection_url(source)
    except Exception:  # noqa: BLE001 - nothing to mask then
        return message
    import sqlalchemy as sa

    try:
        password = sa.make_url(url).password
    except Exception:  # noqa: BLE001
        password = None
    if password:
        message = message.replace(str(password), "***")
    return message.replace(url, masked_url(url))
