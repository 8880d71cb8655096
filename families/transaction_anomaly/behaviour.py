"""Behavioural features of card transactions: ONE definition for training and serving.

A customer's history is summarised in a small, bounded :class:`Profile`. Two pure
functions define everything::

    features(profile, txn) -> dict   # what the model sees for txn, given the history before it
    update(profile, txn) -> None     # fold txn into the history (in place)

Offline, :func:`compute_offline` replays every customer's transactions in time order
through the same two functions (point in time: a row never sees itself or anything
later). Online, the serving layer keeps the profile in Redis and calls the same
functions, so a stream replayed through the API yields the same numbers.

Edge cases (the documented answers):

* **Ties.** Transactions with the same timestamp are processed in arrival order
  (offline: row order). An earlier tied transaction counts as "before": it is in the
  1 h / 24 h windows and ``seconds_since_last`` is 0.
* **Out of order** (online only; offline replays in time order). A transaction older
  than the profile's latest one is scored at its own timestamp: the windows count
  the history in ``(ts - window, ts]``, ``seconds_since_last`` is 0. It is then
  inserted in time order; the latest timestamp stays the maximum seen.
* **Future timestamps.** :func:`parse_transaction` with ``now`` rejects a timestamp
  more than ``MAX_FUTURE_SKEW_S`` (5 min) ahead with :class:`InvalidTransaction`
  naming ``timestamp``. Offline snapshots are not checked against the clock.
* **Refunds / negative amounts.** Scored with ``is_refund = 1`` and the amount
  features on ``|amount|``; a refund leaves the profile unchanged (it is not spending
  behaviour). A zero amount is an ordinary purchase.
* **Unknown currency.** :class:`InvalidTransaction` naming ``currency`` (online), a
  :class:`DataError` listing the unknown codes (offline). Amounts are compared in EUR
  with the fixed rates in ``families.transaction_anomaly.data.FX_TO_EUR``.
* **Cold start** (no history, or no profile because the store is unreachable): the
  profile-free features of :func:`features` on an empty profile: ``history_count = 0``,
  deviations 0, novelty flags 0, ``seconds_since_last = MAX_GAP_S``; the reasons say so.
* **Bounds.** At most ``MAX_RECENT`` transactions are kept in the 24 h window (the
  1 h / 24 h counts saturate there); at most ``MAX_SEEN`` countries, categories,
  devices and channels are remembered (the oldest first-seen is forgotten first).
* **Re-sent transactions** (online). A purchase whose id (``Txn.txn_id``, the spec's id
  column) is among the customer's last ``MAX_SEEN_IDS`` folded ids is answered against
  the profile as it is (which already holds the first sending) and not folded in again
  (:func:`fold`). Offline replays count every row, as training always has.
"""

from __future__ import annotations

import json
import math
import numbers
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from families.transaction_anomaly.data import DEFAULT_DATASET, FX_TO_EUR, TransactionDataset
from ledgerline.errors import DataError

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MAX_RECENT = 256
MAX_SEEN = 32
MAX_SEEN_IDS = 64  # transaction ids remembered per customer, to fold a re-sent transaction in only once
MAX_GAP_S = 30 * 86_400.0
MAX_FUTURE_SKEW_S = 300.0
MIN_LOG_SD = 0.25
MIN_GAP_LOG_SD = 0.5
MIN_HOUR_SPREAD = 1.0
NOVELTY_SCORE = 3.0
NOVELTY_FULL_AT = 5  # novelty counts fully once the customer has this many transactions
PROFILE_VERSION = 1
_TWO_PI_OVER_24 = 2.0 * math.pi / 24.0

FEATURE_NAMES: tuple[str, ...] = (
    "amount_eur",
    "amount_log_z",
    "is_refund",
    "hour_of_day",
    "hour_deviation",
    "count_1h",
    "sum_1h",
    "count_24h",
    "sum_24h",
    "seconds_since_last",
    "gap_log_z",
    "new_country",
    "new_category",
    "new_device",
    "new_channel",
    "history_count",
)


#: The features a transaction has without its customer's history: what a profile-free forest scores
#: while the profile store is unreachable (families/transaction_anomaly/scoring.py).
PROFILE_FREE_FEATURES: tuple[str, ...] = ("amount_eur", "is_refund", "hour_of_day")


class InvalidTransaction(DataError, ValueError):
    """One transaction cannot be scored as given; ``field`` names the offending field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class Txn(NamedTuple):
    """A transaction reduced to what the behavioural features need."""

    ts_ms: int
    amount_eur: float  # absolute value, in EUR
    is_refund: bool
    country: str | None = None
    category: str | None = None
    channel: str | None = None
    device: str | None = None
    txn_id: str | None = None  # the transaction's id (the spec's id column), when known


@dataclass(slots=True)
class Profile:
    """A customer's history: bounded in size whatever the number of transactions."""

    n: int = 0  # purchases folded in (refunds are not)
    log_mean: float = 0.0  # Welford running mean / M2 of log1p(amount_eur)
    log_m2: float = 0.0
    last_ms: int | None = None  # latest timestamp seen
    recent_ts: list[int] = field(default_factory=list)  # sorted, within 24 h of last_ms
    recent_amt: list[float] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    hour_sin: float = 0.0  # sums of sin / cos of the hour angle (circular mean hour)
    hour_cos: float = 0.0
    gap_n: int = 0  # Welford on log1p(seconds between consecutive purchases)
    gap_mean: float = 0.0
    gap_m2: float = 0.0
    c1h_sum: float = 0.0  # sum of count_1h over past purchases (typical hourly count)
    c24_sum: float = 0.0
    seen_ids: list[str] = field(default_factory=list)  # the last MAX_SEEN_IDS folded transaction ids

    def to_json(self) -> str:
        return json.dumps(
            [PROFILE_VERSION, self.n, self.log_mean, self.log_m2, self.last_ms, self.recent_ts, self.recent_amt,
             self.countries, self.categories, self.devices, self.channels, self.hour_sin, self.hour_cos,
             self.gap_n, self.gap_mean, self.gap_m2, self.c1h_sum, self.c24_sum, self.seen_ids],
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Profile:
        """A stored profile; one written before transaction ids were kept (18 fields) reads with none."""
        v = json.loads(text)
        if not isinstance(v, list) or not v or v[0] != PROFILE_VERSION or len(v) not in (18, 19):
            raise DataError(f"stored customer profile has an unknown layout (expected version {PROFILE_VERSION})")
        return cls(*v[1:])

    # What "typical" means, for the reasons.
    def typical_amount(self) -> float:
        return math.expm1(self.log_mean)

    def log_sd(self) -> float:
        return math.sqrt(self.log_m2 / (self.n - 1)) if self.n > 1 else 0.0

    def typical_hour(self) -> float:
        return (math.atan2(self.hour_sin, self.hour_cos) / _TWO_PI_OVER_24) % 24.0

    def hour_spread(self) -> float:
        """Circular standard deviation of the hour, in hours."""
        if self.n == 0:
            return 0.0
        r = min(1.0, math.hypot(self.hour_sin, self.hour_cos) / self.n)
        return math.sqrt(-2.0 * math.log(r)) / _TWO_PI_OVER_24 if r > 0 else 12.0

    def typical_gap_s(self) -> float:
        return math.expm1(self.gap_mean)

    def gap_sd(self) -> float:
        return math.sqrt(self.gap_m2 / (self.gap_n - 1)) if self.gap_n > 1 else 0.0


def _hour(ts_ms: int) -> float:
    return (ts_ms % DAY_MS) / HOUR_MS


def _window(p: Profile, ts_ms: int, width_ms: int) -> tuple[int, float]:
    hi = bisect_right(p.recent_ts, ts_ms)
    lo = bisect_right(p.recent_ts, ts_ms - width_ms)
    return hi - lo, sum(p.recent_amt[lo:hi])


def _novel(value: str | None, seen: list[str], n: int) -> float:
    return 1.0 if n > 0 and value is not None and value not in seen else 0.0


def features(p: Profile, t: Txn) -> dict[str, float]:
    """The model's features for ``t`` given the history ``p`` before it (``p`` is not changed)."""
    log_amt = math.log1p(t.amount_eur)
    n = p.n
    z = (log_amt - p.log_mean) / max(p.log_sd(), MIN_LOG_SD) if n > 1 else 0.0
    hour = _hour(t.ts_ms)
    if n > 0:
        d = abs(hour - p.typical_hour())
        hour_dev = min(d, 24.0 - d)
    else:
        hour_dev = 0.0
    c1, s1 = _window(p, t.ts_ms, HOUR_MS)
    c24, s24 = _window(p, t.ts_ms, DAY_MS)
    if p.last_ms is None:
        gap = MAX_GAP_S
    else:
        gap = min(MAX_GAP_S, max(0, t.ts_ms - p.last_ms) / 1000.0)
    gz = (math.log1p(gap) - p.gap_mean) / max(p.gap_sd(), MIN_GAP_LOG_SD) if p.gap_n > 1 else 0.0
    return {
        "amount_eur": t.amount_eur,
        "amount_log_z": z,
        "is_refund": 1.0 if t.is_refund else 0.0,
        "hour_of_day": float(t.ts_ms % DAY_MS // HOUR_MS),
        "hour_deviation": hour_dev,
        "count_1h": float(c1),
        "sum_1h": s1,
        "count_24h": float(c24),
        "sum_24h": s24,
        "seconds_since_last": gap,
        "gap_log_z": gz,
        "new_country": _novel(t.country, p.countries, n),
        "new_category": _novel(t.category, p.categories, n),
        "new_device": _novel(t.device, p.devices, n),
        "new_channel": _novel(t.channel, p.channels, n),
        "history_count": float(n),
    }


def _remember(value: str | None, seen: list[str]) -> None:
    if value is not None and value not in seen:
        seen.append(value)
        if len(seen) > MAX_SEEN:
            del seen[0]


def update(p: Profile, t: Txn) -> None:
    """Fold purchase ``t`` into ``p`` (in place). Refunds leave the profile unchanged."""
    if t.is_refund:
        return
    c1, _ = _window(p, t.ts_ms, HOUR_MS)
    c24, _ = _window(p, t.ts_ms, DAY_MS)
    if p.last_ms is not None and t.ts_ms >= p.last_ms:
        g = math.log1p((t.ts_ms - p.last_ms) / 1000.0)
        p.gap_n += 1
        d = g - p.gap_mean
        p.gap_mean += d / p.gap_n
        p.gap_m2 += d * (g - p.gap_mean)
    p.c1h_sum += c1
    p.c24_sum += c24
    x = math.log1p(t.amount_eur)
    p.n += 1
    d = x - p.log_mean
    p.log_mean += d / p.n
    p.log_m2 += d * (x - p.log_mean)
    angle = _hour(t.ts_ms) * _TWO_PI_OVER_24
    p.hour_sin += math.sin(angle)
    p.hour_cos += math.cos(angle)
    i = bisect_right(p.recent_ts, t.ts_ms)
    p.recent_ts.insert(i, t.ts_ms)
    p.recent_amt.insert(i, t.amount_eur)
    last = t.ts_ms if p.last_ms is None else max(p.last_ms, t.ts_ms)
    p.last_ms = last
    cut = bisect_right(p.recent_ts, last - DAY_MS)
    drop = max(cut, len(p.recent_ts) - MAX_RECENT)
    if drop > 0:
        del p.recent_ts[:drop]
        del p.recent_amt[:drop]
    _remember(t.country, p.countries)
    _remember(t.category, p.categories)
    _remember(t.device, p.devices)
    _remember(t.channel, p.channels)
    if t.txn_id is not None and t.txn_id not in p.seen_ids:
        p.seen_ids.append(t.txn_id)
        if len(p.seen_ids) > MAX_SEEN_IDS:
            del p.seen_ids[0]


def fold(p: Profile, t: Txn) -> bool:
    """The online update: fold ``t`` into ``p`` unless it is a refund or a re-sent transaction (its id is
    among the last ``MAX_SEEN_IDS`` folded); True when ``p`` changed."""
    if t.is_refund or (t.txn_id is not None and t.txn_id in p.seen_ids):
        return False
    update(p, t)
    return True


# --- reasons ---------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:,.2f}"


def _hhmm(h: float) -> str:
    m = int(round(h * 60)) % (24 * 60)
    return f"{m // 60:02d}:{m % 60:02d}"


def reasons(p: Profile, t: Txn, f: Mapping[str, float], top_k: int = 3,
            profile_available: bool = True) -> list[dict[str, Any]]:
    """The features that made ``t`` unusual for this customer, most unusual first, as plain dicts.

    Each has ``feature``, ``value``, ``typical``, ``score`` (a z-like unusualness) and ``text``.
    Without a profile (store unreachable) or without history (cold start) the only reason says so.
    """
    if not profile_available:
        return [{"feature": "profile", "value": None, "typical": None, "score": 0.0,
                 "text": "customer profile unavailable: scored on the transaction alone (amount, refund, hour) "
                         "against all customers, without the customer's history"}]
    n = p.n
    if n == 0:
        return [{"feature": "history_count", "value": 0, "typical": None, "score": 0.0,
                 "text": "first transaction seen for this customer: no history to compare with"}]
    out: list[dict[str, Any]] = []
    typ_amt = p.typical_amount()
    z = f["amount_log_z"]
    if n > 1 and z != 0.0:
        out.append({"feature": "amount", "value": t.amount_eur, "typical": typ_amt, "score": abs(z),
                    "text": f"amount {_fmt(t.amount_eur)} vs typical {_fmt(typ_amt)} (EUR)"})
    for name, key, denom_sum in (("count_1h", "count_1h", p.c1h_sum), ("count_24h", "count_24h", p.c24_sum)):
        typ = denom_sum / n
        s = (f[key] - typ) / math.sqrt(typ + 1.0)
        if s > 0:
            window = "hour" if key == "count_1h" else "24 hours"
            out.append({"feature": name, "value": f[key], "typical": typ, "score": s,
                        "text": f"{int(f[key])} transactions in the previous {window} vs typical {typ:.1f}"})
    gz = f["gap_log_z"]
    if gz < 0:
        typ_gap = p.typical_gap_s()
        out.append({"feature": "seconds_since_last", "value": f["seconds_since_last"], "typical": typ_gap,
                    "score": -gz, "text": f"{_fmt(f['seconds_since_last'])} s since the previous transaction "
                                          f"vs typical {_fmt(typ_gap)} s"})
    if f["hour_deviation"] > 0:
        s = f["hour_deviation"] / max(p.hour_spread(), MIN_HOUR_SPREAD)
        hour = _hour(t.ts_ms)
        out.append({"feature": "hour_deviation", "value": hour, "typical": p.typical_hour(), "score": s,
                    "text": f"at {_hhmm(hour)} UTC vs typical {_hhmm(p.typical_hour())}"})
    weight = NOVELTY_SCORE * min(1.0, n / NOVELTY_FULL_AT)
    for name, value, seen in (("new_country", t.country, p.countries), ("new_category", t.category, p.categories),
                              ("new_device", t.device, p.devices), ("new_channel", t.channel, p.channels)):
        if f[name] > 0:
            what = name.removeprefix("new_")
            out.append({"feature": name, "value": value, "typical": list(seen[-3:]), "score": weight,
                        "text": f"first time {what} {value} vs usual {', '.join(seen[-3:])}"})
    out.sort(key=lambda r: -r["score"])
    return out[:top_k]


# --- parsing --------------------------------------------------------------------------------


def _to_ms(value: Any) -> int:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ns").value // 1_000_000)


def _opt_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def parse_transaction(record: Mapping[str, Any], dataset: TransactionDataset = DEFAULT_DATASET,
                      now: pd.Timestamp | None = None) -> Txn:
    """One incoming transaction as a :class:`Txn`, or :class:`InvalidTransaction` naming the bad field."""
    ds = dataset
    raw_ts = record.get(ds.timestamp_column)
    if raw_ts is None or raw_ts == "":
        raise InvalidTransaction(ds.timestamp_column, "is required (ISO 8601, e.g. 2026-03-01T14:05:00Z)")
    if isinstance(raw_ts, numbers.Number):  # an epoch number is ambiguous (s? ms? ns?)
        raise InvalidTransaction(ds.timestamp_column, f"{raw_ts!r} is a number; give ISO 8601 text, "
                                 "e.g. 2026-03-01T14:05:00Z")
    try:
        ts_ms = _to_ms(raw_ts)
    except (ValueError, TypeError, OverflowError) as e:
        raise InvalidTransaction(ds.timestamp_column, f"{raw_ts!r} is not a timestamp (use ISO 8601)") from e
    if now is not None:
        skew = (ts_ms - _to_ms(now)) / 1000.0
        if skew > MAX_FUTURE_SKEW_S:
            raise InvalidTransaction(ds.timestamp_column, f"{raw_ts!r} is {skew:,.0f} s in the future "
                                     f"(at most {MAX_FUTURE_SKEW_S:.0f} s of clock skew is accepted)")
    raw_amt = record.get(ds.amount_column)
    if isinstance(raw_amt, bool) or not isinstance(raw_amt, numbers.Real) or not math.isfinite(raw_amt):
        raise InvalidTransaction(ds.amount_column, f"must be a finite number, not {raw_amt!r}")
    rate = 1.0
    if ds.currency_column:
        cur = record.get(ds.currency_column)
        if cur not in FX_TO_EUR:
            raise InvalidTransaction(ds.currency_column, f"unknown currency {cur!r}; "
                                     f"known: {', '.join(sorted(FX_TO_EUR))}")
        rate = FX_TO_EUR[cur]
    amount = float(raw_amt) * rate
    return Txn(
        ts_ms, abs(amount), amount < 0,
        _opt_str(record.get(ds.country_column)) if ds.country_column else None,
        _opt_str(record.get(ds.category_column)) if ds.category_column else None,
        _opt_str(record.get(ds.channel_column)) if ds.channel_column else None,
        _opt_str(record.get(ds.device_column)) if ds.device_column else None,
        _opt_str(record.get(ds.id_column)) if ds.id_column else None,
    )


def _str_column(df: pd.DataFrame, col: str | None) -> list[str | None]:
    if not col or col not in df.columns:
        return [None] * len(df)
    s = df[col]
    return [None if pd.isna(v) else str(v) for v in s.tolist()]


def transactions_from_frame(df: pd.DataFrame, dataset: TransactionDataset = DEFAULT_DATASET,
                            *, with_ids: bool = False) -> list[Txn]:
    """Every row as a :class:`Txn` (the same conversions as :func:`parse_transaction`, vectorised); with
    ``with_ids``, each carries its id (the dataset's id column, when the frame has it), as online."""
    ds = dataset
    for col in (ds.customer_column, ds.timestamp_column, ds.amount_column):
        if col not in df.columns:
            raise DataError(f"column '{col}' is missing; behavioural features need customer, timestamp and amount")
    if pd.api.types.is_numeric_dtype(df[ds.timestamp_column]):
        raise DataError(f"column '{ds.timestamp_column}' holds numbers; give ISO 8601 text or datetimes "
                        "(an epoch number is ambiguous: seconds, milliseconds or nanoseconds?)")
    try:
        ts = pd.to_datetime(df[ds.timestamp_column], utc=True)
    except (ValueError, TypeError) as e:
        raise DataError(f"column '{ds.timestamp_column}' has values that are not timestamps: {e}") from e
    if ts.isna().any():
        raise DataError(f"column '{ds.timestamp_column}' has {int(ts.isna().sum())} missing timestamps")
    ts_ms = (ts.dt.as_unit("ns").astype("int64") // 1_000_000).tolist()
    amt = pd.to_numeric(df[ds.amount_column], errors="coerce").astype(float).to_numpy()
    if not np.isfinite(amt).all():
        raise DataError(f"column '{ds.amount_column}' has {int((~np.isfinite(amt)).sum())} missing or non-numeric values")
    if ds.currency_column and ds.currency_column in df.columns:
        cur = df[ds.currency_column]
        unknown = sorted(set(cur.dropna().astype(str)) - set(FX_TO_EUR)) + (["<missing>"] if cur.isna().any() else [])
        if unknown:
            raise DataError(f"column '{ds.currency_column}' has unknown currencies {unknown[:5]}; "
                            f"known: {', '.join(sorted(FX_TO_EUR))}")
        amt = amt * cur.map(FX_TO_EUR).to_numpy(dtype=float)
    cols = [_str_column(df, c) for c in (ds.country_column, ds.category_column, ds.channel_column, ds.device_column)]
    ids = _str_column(df, ds.id_column) if with_ids else [None] * len(df)
    return [Txn(int(t), abs(a), a < 0, c1, c2, c3, c4, i)
            for t, a, c1, c2, c3, c4, i in zip(ts_ms, amt.tolist(), *cols, ids, strict=True)]


def replay_order(ts_ms: Sequence[int]) -> np.ndarray:
    """Row positions in processing order: by timestamp, ties in row order."""
    return np.lexsort((np.arange(len(ts_ms)), np.asarray(ts_ms, dtype=np.int64)))


def compute_offline(df: pd.DataFrame, dataset: TransactionDataset = DEFAULT_DATASET) -> pd.DataFrame:
    """Point-in-time behavioural features for every row of ``df`` (same index, columns ``FEATURE_NAMES``).

    Rows are replayed in time order (ties in row order) through :func:`features` and :func:`update`.
    """
    txns = transactions_from_frame(df, dataset)
    customers = df[dataset.customer_column].astype(str).tolist()
    order = replay_order([t.ts_ms for t in txns])
    profiles: dict[str, Profile] = {}
    rows: list[list[float]] = [[]] * len(txns)
    for i in order.tolist():
        p = profiles.get(customers[i])
        if p is None:
            p = profiles[customers[i]] = Profile()
        t = txns[i]
        rows[i] = list(features(p, t).values())
        update(p, t)
    return pd.DataFrame(rows, index=df.index, columns=list(FEATURE_NAMES), dtype=float)


def replay_customers(df: pd.DataFrame, dataset: TransactionDataset = DEFAULT_DATASET) -> Iterator[tuple[str, Profile, int]]:
    """Each customer's profile after all its rows of ``df``: (customer, profile, rows), customer by customer.

    Exactly the profiles :func:`compute_offline` ends with (each customer's rows in time order, ties in
    row order, through :func:`update`; refunds leave the profile as it is), with the transaction ids
    remembered as online. One customer's profile is held at a time.
    """
    txns = transactions_from_frame(df, dataset, with_ids=True)
    codes, names = pd.factorize(df[dataset.customer_column].astype(str), sort=False)
    ts = np.fromiter((t.ts_ms for t in txns), dtype=np.int64, count=len(txns))
    order = np.lexsort((np.arange(len(txns)), ts, codes))  # by customer, then time, ties in row order
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for group in np.split(order, bounds) if len(order) else []:
        p = Profile()
        for i in group.tolist():
            update(p, txns[i])
        yield str(names[codes[group[0]]]), p, len(group)
