"""Customer profiles from a champion's training window, so go-live scores known customers as training did.

When a version becomes ``@champion`` (the family's ``on_champion`` hook) or on demand
(``ledgerline profiles load MODEL [--version V]``), the version's training snapshot
(:mod:`training.history`: the run's snapshot file, else a data file logged to the run) is conformed
to the run's spec and replayed customer by customer, in time order, through the same
``update`` the online store folds transactions with
(:func:`families.transaction_anomaly.behaviour.replay_customers`): each customer's profile is
exactly the history the training features were computed from.

Profiles are written to the Redis the serving store uses, under the same keys
(``<profile_key_prefix><model>:<customer>``, :meth:`TransactionAnomalySettings.model_prefix`) with
the same TTL, in pipelined batches. A fill *replaces* each window customer's profile (SET, never a
merge), so filling the same window twice leaves identical profiles; customers outside the window keep
theirs. A customer's online transactions folded in before the fill and not in the window are replaced
with the rest (the report counts the profiles that were there before).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from families.transaction_anomaly.settings import TransactionAnomalySettings
from ledgerline.errors import LedgerlineError
from ledgerline.settings import Settings

DEFAULT_BATCH = 1_000  # profiles per pipeline round trip
PROGRESS_EVERY_S = 5.0
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 30.0


class ProfilesNotFilled(LedgerlineError):
    """The profiles could not be filled (Redis unreachable, training data unreadable, profiles in memory);
    ``retryable``: ``ledgerline profiles load`` can fill them once the cause is fixed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class FillReport:
    model_name: str
    version: str
    customers: int  # profiles written
    rows: int  # transactions replayed
    replaced: int  # of them, profiles that existed before (refreshed)
    seconds: float
    source: str  # the training data's origin
    prefix: str

    @property
    def note(self) -> str:
        rate = self.customers / self.seconds if self.seconds > 0 else float(self.customers)
        return (f"customer profiles filled from v{self.version}'s training window: {self.customers:,} customers "
                f"({self.replaced:,} refreshed, {self.customers - self.replaced:,} new) from {self.rows:,} "
                f"transactions of {self.source} in {self.seconds:.1f}s ({rate:,.0f} customers/s)")


def redacted(url: str) -> str:
    """A Redis URL without its password."""
    return re.sub(r"//[^@/]*@", "//***@", url)


def _connect(url: str):  # noqa: ANN202 - redis.Redis, imported lazily
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S,
                                retry_on_timeout=False, health_check_interval=0)


def fill_profiles(
    settings: Settings,
    model_name: str,
    version: str,
    *,
    run_id: str | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
    batch: int = DEFAULT_BATCH,
    progress_every_s: float = PROGRESS_EVERY_S,
) -> FillReport | None:
    """Fill (or refresh) ``model_name``'s customer profiles from ``version``'s training window.

    None when the version's spec has no behavioural roles (the model keeps no profiles).
    ProfilesNotFilled names why nothing (or, after an outage half-way, not everything) was written.
    """
    from redis.exceptions import RedisError

    from families.transaction_anomaly.behaviour import replay_customers
    from families.transaction_anomaly.data import dataset_from_spec, has_behaviour_roles
    from features.spec import conform
    from training.history import training_data, version_run_id, version_spec

    own = TransactionAnomalySettings.of(settings.families)
    what = f"customer profiles of {model_name} were NOT filled from v{version}'s training window"
    try:
        run_id = run_id or version_run_id(settings, model_name, version)
        spec = version_spec(settings, model_name, version, run_id)
    except LedgerlineError as exc:
        raise ProfilesNotFilled(f"{what}: {exc}") from exc
    if not has_behaviour_roles(spec):
        return None  # the model scores the columns given: it keeps no profiles
    if own.profile_store_url == "memory":
        raise ProfilesNotFilled(f"{what}: the serving API keeps them in its own memory (profile_store_url=memory), "
                                "which nothing outside it can fill; they build up from traffic", retryable=False)
    client = _connect(own.profile_store_url)
    where = f"Redis at {redacted(own.profile_store_url)}"
    try:
        try:
            client.ping()  # before reading the window: an outage is named at once
        except (RedisError, OSError) as exc:
            raise ProfilesNotFilled(f"{what}: {where} is unreachable ({exc})") from exc
        try:
            data = training_data(settings, model_name, version, run_id, spec)
        except LedgerlineError as exc:
            raise ProfilesNotFilled(f"{what}: {exc}") from exc
        dataset = dataset_from_spec(data.spec)
        frame = conform(data.frame, data.spec)
        total = int(frame[dataset.customer_column].astype(str).nunique())
        prefix, ttl = own.model_prefix(model_name), own.profile_ttl_seconds
        progress(f"filling {total:,} customer profiles of {model_name} from v{version}'s training window "
                 f"({len(frame):,} transactions, {data.source}) into {where}, keys {prefix}*")
        start = last = time.monotonic()
        done = replaced = 0
        pipe = client.pipeline(transaction=False)
        pending = 0
        try:
            for customer, profile, _rows in replay_customers(frame, dataset):
                pipe.set(prefix + customer, profile.to_json(), ex=ttl, get=True)
                pending += 1
                if pending >= batch:
                    replaced += sum(old is not None for old in pipe.execute())
                    done += pending
                    pending = 0
                    now = time.monotonic()
                    if now - last >= progress_every_s:
                        last = now
                        progress(f"profiles: {done:,} of {total:,} customers ({done / (now - start):,.0f} customers/s)")
            if pending:
                replaced += sum(old is not None for old in pipe.execute())
                done += pending
        except (RedisError, OSError) as exc:
            raise ProfilesNotFilled(f"{what} (only {done:,} of {total:,} written): {where} failed: {exc}") from exc
        return FillReport(model_name, str(version), done, len(frame), replaced, time.monotonic() - start,
                          data.source, prefix)
    finally:
        client.close()


def on_champion_note(settings: Settings, model_name: str, version: str, run_id: str | None,
                     progress: Callable[[str], None]) -> str | None:
    """The hook's work: fill, and say what happened in one line for the ledger (loudly when not filled)."""
    try:
        report = fill_profiles(settings, model_name, version, run_id=run_id, progress=progress)
    except ProfilesNotFilled as exc:
        note = f"WARNING: {exc}"
        if exc.retryable:
            note += (f"; known customers are scored as new until you run "
                     f"`ledgerline profiles load {model_name} --version {version}`")
        progress(note)
        return note
    if report is None:
        return None
    progress(report.note)
    return report.note
