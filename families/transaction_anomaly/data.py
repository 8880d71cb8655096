"""A deterministic generator of card transactions with injected fraud, and the family's dataset description.

Each customer has a home country (and its currency), two or three usual merchant
categories, a usual amount (log-normal), a usual hour of day, one or two devices
for online shopping and a propensity for online and ATM use. Normal transactions
follow that profile; about 1 % happen abroad.

Five fraud patterns are injected into the later part of the period (so a victim
already has a history), together about 0.5 % of the rows:

==================  ===============================================================  ==========================================
pattern             what happens                                                     features it changes (PATTERN_FEATURES)
==================  ===============================================================  ==========================================
card_testing        a burst of 5-8 tiny online amounts (0.50-2.99), 20-90 s apart   amount, count_1h, seconds_since_last
account_takeover    a new device, a foreign country, a large online amount, any hour  new_device, new_country, amount, hour_deviation
atm_cashout         1-3 large ATM withdrawals between 01:00 and 04:59 UTC             hour_deviation, new_channel, amount
category_shift      3-5 purchases in categories the customer never used              new_category
velocity_spike      10-16 usual-looking purchases within about an hour               count_1h, count_24h, seconds_since_last
==================  ===============================================================  ==========================================

``is_fraud`` and ``fraud_pattern`` are for evaluation only: the model never sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ledgerline.errors import DataError

if TYPE_CHECKING:
    from features.spec import DatasetSpec, PartialSpec

CATEGORIES = (
    "grocery", "restaurant", "fuel", "transport", "clothing", "pharmacy", "entertainment",
    "utilities", "travel", "digital_goods", "electronics", "jewelry", "gambling", "luxury_goods",
    "crypto_exchange", "cash_withdrawal",
)
# Categories a normal customer draws their usual ones from (the rest are rare and risky).
USUAL_CATEGORIES = CATEGORIES[:9]
SHIFT_CATEGORIES = ("electronics", "jewelry", "gambling", "luxury_goods", "crypto_exchange")
COUNTRY_CURRENCY = {
    "GB": "GBP", "DE": "EUR", "FR": "EUR", "ES": "EUR", "IT": "EUR", "NL": "EUR",
    "US": "USD", "PL": "PLN", "SE": "SEK", "CH": "CHF",
}
HOME_COUNTRIES = ("GB", "DE", "FR", "ES", "IT", "NL", "US", "PL")
HOME_SHARE = (0.25, 0.2, 0.15, 0.1, 0.1, 0.08, 0.07, 0.05)
# Fixed reference rates to EUR: the behavioural features compare amounts in EUR.
FX_TO_EUR = {"EUR": 1.0, "GBP": 1.17, "USD": 0.92, "PLN": 0.23, "SEK": 0.087, "CHF": 1.05}
CHANNELS = ("pos", "online", "atm")
FRAUD_PATTERNS = ("card_testing", "account_takeover", "atm_cashout", "category_shift", "velocity_spike")
# The behavioural features each injected pattern changes (names as in families.transaction_anomaly.behaviour.reasons).
PATTERN_FEATURES: dict[str, frozenset[str]] = {
    "card_testing": frozenset({"amount", "count_1h", "seconds_since_last"}),
    "account_takeover": frozenset({"new_device", "new_country", "amount", "hour_deviation"}),
    "atm_cashout": frozenset({"hour_deviation", "new_channel", "amount"}),
    "category_shift": frozenset({"new_category"}),
    "velocity_spike": frozenset({"count_1h", "count_24h", "seconds_since_last"}),
}
# Rows per event (inclusive bounds) and share of fraud rows per pattern.
_EVENT_ROWS = {
    "card_testing": (5, 8),
    "account_takeover": (1, 1),
    "atm_cashout": (1, 3),
    "category_shift": (3, 5),
    "velocity_spike": (10, 16),
}
_PATTERN_SHARE = {
    "card_testing": 0.25,
    "account_takeover": 0.2,
    "atm_cashout": 0.15,
    "category_shift": 0.15,
    "velocity_spike": 0.25,
}
FRAUD_RATE = 0.005
TRANSACTIONS_PER_CUSTOMER = 60
PERIOD_DAYS = 90
MAX_ROWS = 5_000_000
DAY_MS = 86_400_000


@dataclass(frozen=True)
class TransactionDataset:
    """Which column plays which role in a transaction table (the family's data contract)."""

    id_column: str = "transaction_id"
    customer_column: str = "customer_id"
    timestamp_column: str = "timestamp"
    amount_column: str = "amount"
    currency_column: str | None = "currency"
    country_column: str | None = "country"
    category_column: str | None = "merchant_category"
    channel_column: str | None = "channel"
    device_column: str | None = "device_id"
    merchant_column: str | None = "merchant_id"
    label_column: str | None = "is_fraud"
    pattern_column: str | None = "fraud_pattern"  # evaluation only

    @property
    def evaluation_only(self) -> tuple[str, ...]:
        return tuple(c for c in (self.label_column, self.pattern_column) if c)

    @property
    def categorical_columns(self) -> tuple[str, ...]:
        cols = (self.currency_column, self.country_column, self.category_column, self.channel_column)
        return tuple(c for c in cols if c)


DEFAULT_DATASET = TransactionDataset()


def _pick(rng: np.random.Generator, options: np.ndarray, n: int) -> np.ndarray:
    return options[rng.integers(0, len(options), n)]


def generate_transactions(
    n_rows: int = 100_000,
    seed: int = 42,
    *,
    start: str | pd.Timestamp = "2026-01-01",
    fraud_rate: float = FRAUD_RATE,
) -> pd.DataFrame:
    """``n_rows`` card transactions over 90 days from ``start`` (UTC), sorted by time; same seed, same table."""
    if not 200 <= n_rows <= MAX_ROWS:
        raise DataError(f"n_rows must be between 200 and {MAX_ROWS:,}, not {n_rows}")
    if not 0.0 <= fraud_rate <= 0.05:
        raise DataError(f"fraud_rate must be between 0 and 0.05, not {fraud_rate}")
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    t0_ms = t0.value // 1_000_000

    # --- customers -------------------------------------------------------------------------
    n_cust = max(20, n_rows // TRANSACTIONS_PER_CUSTOMER)
    home = np.array(HOME_COUNTRIES)[rng.choice(len(HOME_COUNTRIES), n_cust, p=HOME_SHARE)]
    usual = np.array([rng.choice(len(USUAL_CATEGORIES), 3, replace=False) for _ in range(n_cust)])
    n_usual = rng.integers(2, 4, n_cust)
    log_mu = rng.normal(3.4, 0.6, n_cust)  # median amount around 30 EUR
    log_sd = rng.uniform(0.35, 0.7, n_cust)
    usual_hour = rng.normal(14.0, 3.0, n_cust).clip(8, 21)
    p_online = rng.uniform(0.05, 0.4, n_cust)
    p_atm = np.where(rng.random(n_cust) < 0.4, rng.uniform(0.02, 0.08, n_cust), 0.0)
    n_devices = rng.integers(1, 3, n_cust)
    activity = rng.gamma(3.0, 1.0, n_cust)
    activity /= activity.sum()

    # --- fraud events ----------------------------------------------------------------------
    n_fraud_target = int(round(n_rows * fraud_rate))
    events: list[tuple[str, int]] = []
    for pattern in FRAUD_PATTERNS:
        lo, hi = _EVENT_ROWS[pattern]
        budget = int(round(n_fraud_target * _PATTERN_SHARE[pattern]))
        while budget > 0:
            size = min(int(rng.integers(lo, hi + 1)), budget if budget >= lo else lo)
            events.append((pattern, size))
            budget -= size
    n_fraud = sum(s for _, s in events)
    n_normal = n_rows - n_fraud

    # --- normal transactions ----------------------------------------------------------------
    cust = rng.choice(n_cust, n_normal, p=activity)
    day = rng.integers(0, PERIOD_DAYS, n_normal)
    hour = (usual_hour[cust] + rng.normal(0, 2.5, n_normal)).clip(6, 23.99)
    ts = t0_ms + day * DAY_MS + (hour * 3_600_000).astype(np.int64)
    u = rng.random(n_normal)
    channel = np.where(u < p_atm[cust], "atm", np.where(u < p_atm[cust] + p_online[cust], "online", "pos"))
    slot = rng.integers(0, 3, n_normal) % n_usual[cust]
    category = np.array(USUAL_CATEGORIES)[usual[cust, slot]]
    category = np.where(channel == "atm", "cash_withdrawal", category)
    amount = np.exp(rng.normal(log_mu[cust], log_sd[cust]))
    amount = np.where(channel == "atm", np.round(amount * 2 / 10 + 1) * 10, amount)
    abroad = rng.random(n_normal) < 0.01
    country = np.where(abroad, _pick(rng, np.array(list(COUNTRY_CURRENCY)), n_normal), home[cust])
    device_slot = rng.integers(0, 2, n_normal) % n_devices[cust]
    device = np.where(
        channel == "online",
        np.char.add(np.char.add("dev-", cust.astype(str)), np.char.add("-", device_slot.astype(str))),
        np.char.add("card-", cust.astype(str)),
    )
    pattern_col = np.full(n_normal, "", dtype=object)

    # --- fraud rows ---------------------------------------------------------------------------
    f_cust, f_ts, f_amount, f_channel, f_cat, f_country, f_device, f_pattern = ([] for _ in range(8))
    first_fraud_day = PERIOD_DAYS // 3
    for k, (pattern, size) in enumerate(events):
        c = int(rng.choice(n_cust, p=activity))
        base = t0_ms + int(rng.integers(first_fraud_day, PERIOD_DAYS)) * DAY_MS
        usual_h = float(usual_hour[c])
        mu = float(log_mu[c])
        foreign = [x for x in COUNTRY_CURRENCY if x != home[c]]
        for i in range(size):
            if pattern == "card_testing":
                t = base + int(usual_h * 3_600_000) + i * int(rng.integers(20_000, 90_000))
                a, ch, cat = float(rng.uniform(0.5, 2.99)), "online", "digital_goods"
                ctry, dev = str(home[c]), f"dev-{c}-0"
            elif pattern == "account_takeover":
                t = base + int(rng.uniform(0, 24) * 3_600_000)
                a = float(np.exp(mu + rng.uniform(2.2, 3.0)))
                ch, cat = "online", str(rng.choice(["electronics", "travel", "jewelry"]))
                ctry, dev = str(rng.choice(foreign)), f"ato-{k}"
            elif pattern == "atm_cashout":
                t = base + int(rng.uniform(1.0, 4.5) * 3_600_000) + i * 600_000  # last one before 04:50
                a = float(np.round(np.exp(mu + rng.uniform(2.0, 2.8)) / 10 + 1) * 10)
                ch, cat, ctry, dev = "atm", "cash_withdrawal", str(home[c]), f"card-{c}"
            elif pattern == "category_shift":
                t = base + int(usual_h * 3_600_000) + i * int(rng.integers(600_000, 3_600_000))
                a = float(np.exp(mu + rng.uniform(0.2, 0.8)))
                ch, cat = "pos", SHIFT_CATEGORIES[i % len(SHIFT_CATEGORIES)]
                ctry, dev = str(home[c]), f"card-{c}"
            else:  # velocity_spike
                t = base + int(usual_h * 3_600_000) + i * int(rng.integers(120_000, 360_000))
                a = float(np.exp(rng.normal(mu, float(log_sd[c]))))
                ch, cat = "pos", str(USUAL_CATEGORIES[usual[c, i % n_usual[c]]])
                ctry, dev = str(home[c]), f"card-{c}"
            f_cust.append(c)
            f_ts.append(t)
            f_amount.append(a)
            f_channel.append(ch)
            f_cat.append(cat)
            f_country.append(ctry)
            f_device.append(dev)
            f_pattern.append(pattern)

    all_cust = np.concatenate([cust, np.array(f_cust, dtype=np.int64)])
    all_country = np.concatenate([country, np.array(f_country, dtype=object)]).astype(str)
    df = pd.DataFrame({
        "customer_id": np.char.add("c", np.char.zfill(all_cust.astype(str), 6)),
        "ts_ms": np.concatenate([ts, np.array(f_ts, dtype=np.int64)]),
        "amount": np.round(np.concatenate([amount, np.array(f_amount)]), 2).clip(0.5, None),
        "currency": pd.Series(all_country).map(COUNTRY_CURRENCY).to_numpy(),
        "merchant_category": np.concatenate([category, np.array(f_cat, dtype=object)]).astype(str),
        "channel": np.concatenate([channel, np.array(f_channel, dtype=object)]).astype(str),
        "country": all_country,
        "device_id": np.concatenate([device, np.array(f_device, dtype=object)]).astype(str),
        "fraud_pattern": np.concatenate([pattern_col, np.array(f_pattern, dtype=object)]),
    })
    df = df.sort_values(["ts_ms", "customer_id"], kind="stable").reset_index(drop=True)
    df.insert(0, "transaction_id", [f"t{i:09d}" for i in range(len(df))])
    df.insert(2, "timestamp", pd.to_datetime(df.pop("ts_ms"), unit="ms", utc=True))
    merchant_no = rng.integers(0, 400, len(df))
    df.insert(6, "merchant_id", df["merchant_category"] + "-" + pd.Series(merchant_no).astype(str))
    df["fraud_pattern"] = df["fraud_pattern"].replace("", None)
    df["is_fraud"] = df["fraud_pattern"].notna().astype(int)
    return df[[
        "transaction_id", "customer_id", "timestamp", "amount", "currency", "merchant_category",
        "merchant_id", "channel", "country", "device_id", "is_fraud", "fraud_pattern",
    ]]


# --- the family's data contract ---------------------------------------------------------------

#: column names recognised for each role when a user's table does not say (lower case)
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "customer": ("customer_id", "customer", "account_id", "account", "card_id", "client_id", "user_id"),
    "timestamp": ("timestamp", "transaction_time", "datetime", "time", "ts", "created_at", "date"),
    "amount": ("amount", "transaction_amount", "amt", "value"),
    "currency": ("currency", "currency_code", "ccy"),
    "country": ("country", "country_code", "merchant_country"),
    "category": ("merchant_category", "category", "mcc"),
    "channel": ("channel",),
    "device": ("device_id", "device"),
    "merchant": ("merchant_id", "merchant"),
}
#: roles whose columns are free text (identifiers): no closed set of values
FREE_TEXT_ROLES = ("customer", "country", "device", "merchant")


def transaction_spec(name: str = "transaction-anomaly") -> DatasetSpec:
    """The spec of :func:`generate_transactions`' table."""
    from features.spec import ColumnSpec, DatasetSpec

    ds = DEFAULT_DATASET
    columns = (
        ColumnSpec(ds.customer_column, "categorical"),
        ColumnSpec(ds.timestamp_column, "datetime"),
        ColumnSpec(ds.amount_column, "numeric", min=-100_000.0, max=100_000.0),
        ColumnSpec("currency", "categorical", values=tuple(sorted(FX_TO_EUR))),
        ColumnSpec("merchant_category", "categorical", values=tuple(sorted(CATEGORIES))),
        ColumnSpec("merchant_id", "categorical"),
        ColumnSpec("channel", "categorical", values=CHANNELS),
        ColumnSpec("country", "categorical"),
        ColumnSpec("device_id", "categorical"),
    )
    roles = {
        "customer": "customer_id", "timestamp": "timestamp", "amount": "amount", "currency": "currency",
        "country": "country", "category": "merchant_category", "channel": "channel", "device": "device_id",
        "merchant": "merchant_id", "pattern": "fraud_pattern",
    }
    return DatasetSpec(
        name=name,
        target="is_fraud",
        positive_label="1",
        negative_labels=("0",),
        columns=columns,
        id_column=ds.id_column,
        positive_rate=(0.0, 0.05),
        min_rows=200,
        roles=roles,
        passthrough=("fraud_pattern",),
    )


def infer_transaction_spec(
    df: pd.DataFrame, *, target: str | None, positive_label: str | None, partial: PartialSpec, name: str
) -> DatasetSpec:
    """A spec for a user's transaction table: roles found by column name (the spec's ``roles`` win),
    free text for identifiers, types inferred for the rest; the label, when given, is for evaluation."""
    from features.spec import (
        MAX_CATEGORIES,
        ColumnSpec,
        DatasetSpec,
        LabelCodec,
        SpecError,
        _looks_like_id,
        _widen,
        check_target,
        coerce_numeric,
        is_numeric_series,
        observed_negatives,
    )

    target = target or partial.target
    positive_label = positive_label if positive_label is not None else partial.positive_label
    if target is not None:
        check_target(df, target, positive_label)
    unknown = [c for c in [*partial.columns, *partial.roles.values(), *partial.passthrough] if c not in df.columns]
    if unknown:
        raise SpecError(f"spec names columns {sorted(set(unknown))} that are not in the data; columns are {list(df.columns)}")
    skip = {c for c in (target, *partial.drop, *partial.passthrough) if c}
    lower = {str(c).lower(): str(c) for c in df.columns if c not in skip}
    roles = dict(partial.roles)
    for role, names in ROLE_NAMES.items():
        if role not in roles:
            found = next((lower[n] for n in names if n in lower), None)
            if found is not None and found not in roles.values():
                roles[role] = found
    id_column = partial.id_column
    if id_column is None:
        id_column = next(
            (c for c in df.columns if c not in skip and c not in roles.values() and _looks_like_id(df[c], str(c))), None
        )
    if id_column:
        skip.add(id_column)
    free_text = {roles[r] for r in FREE_TEXT_ROLES if r in roles}
    columns: list[ColumnSpec] = []
    for col in df.columns:
        if col in skip:
            continue
        s, override = df[col], partial.columns.get(col, {})
        null_frac = float(s.isna().mean())
        nulls = float(override.get("max_null_fraction", min(1.0, round(null_frac * 2 + 0.05, 4)) if null_frac else 0.0))
        kind = override.get("type") or (
            "datetime" if col == roles.get("timestamp")
            else "numeric" if is_numeric_series(s) or pd.api.types.is_bool_dtype(s)
            else "categorical"
        )
        if kind == "numeric":
            num = coerce_numeric(s, str(col))
            lo, hi = (float(num.min()), float(num.max())) if num.notna().any() else (0.0, 0.0)
            wlo, whi = _widen(lo, hi)
            columns.append(ColumnSpec(str(col), "numeric", min=override.get("min", wlo), max=override.get("max", whi),
                                      max_null_fraction=nulls))
        elif kind == "datetime":
            columns.append(ColumnSpec(str(col), "datetime", max_null_fraction=nulls))
        else:
            observed = sorted({str(v) for v in s.dropna().unique()})
            closed = col not in free_text and len(observed) <= MAX_CATEGORIES
            values = override.get("values", observed if closed else None)
            columns.append(ColumnSpec(str(col), "categorical", values=None if values is None else tuple(map(str, values)),
                                      max_null_fraction=nulls))
    if not columns:
        raise SpecError("the table has no columns to learn from besides the id, label and evaluation columns")
    negatives: tuple[str, ...] = ()
    if target is not None and positive_label is not None:
        negatives = tuple(partial.negative_labels) or observed_negatives(df, target, str(positive_label))
        LabelCodec(target, str(positive_label), negatives)
    return DatasetSpec(
        name=partial.name or name,
        target=target,
        positive_label=None if positive_label is None else str(positive_label),
        negative_labels=negatives,
        columns=tuple(columns),
        id_column=id_column,
        drop=tuple(partial.drop),
        positive_rate=partial.positive_rate,
        min_rows=partial.min_rows if partial.min_rows is not None else min(200, len(df)),
        roles=roles,
        passthrough=tuple(partial.passthrough),
        protected=tuple(partial.protected),
    )


#: the share of transactions alerted on may lie within this factor band around the alert budget
#: (the gate on the holdout, monitoring on the live window; both allow for sampling noise)
ALERT_RATE_BAND = (0.5, 2.0)
#: roles the behavioural features need; without them the forest runs on the columns given
BEHAVIOUR_ROLES = ("customer", "timestamp", "amount")


def has_behaviour_roles(spec: DatasetSpec) -> bool:
    return all(role in spec.roles for role in BEHAVIOUR_ROLES)


def dataset_from_spec(spec: DatasetSpec) -> TransactionDataset:
    """The behavioural features' view of the spec's column roles."""
    from features.spec import LABEL_COLUMN

    r = spec.roles
    return TransactionDataset(
        id_column=spec.id_column or "",
        customer_column=r["customer"],
        timestamp_column=r["timestamp"],
        amount_column=r["amount"],
        currency_column=r.get("currency"),
        country_column=r.get("country"),
        category_column=r.get("category"),
        channel_column=r.get("channel"),
        device_column=r.get("device"),
        merchant_column=r.get("merchant"),
        label_column=LABEL_COLUMN if spec.target else None,
        pattern_column=r.get("pattern"),
    )
