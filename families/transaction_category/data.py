"""Transaction categorisation: the statement-line generator, the text normalisation and the
n-grams (one definition for training, serving and the correction rules), and the data contract.

A statement line such as ``"SQ *BLUE BOTTLE 0421 OAKLAND CA"`` is normalised to
``"blue bottle oakland"``: lower case, processor prefixes (``POS``, ``SQ *``, ``TST*``,
``PAYPAL *``, ...) and tokens holding digits (store, terminal and reference numbers) removed,
punctuation to spaces, a trailing US state code dropped, spaces collapsed. That normalised text
is what the model reads (:func:`ngrams`) and what a user's correction is keyed on
(:func:`merchant_key`), so a correction of one line applies to every line of that merchant that
normalises the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ledgerline.errors import DataError

#: the categories of the generated data (a user's data brings its own)
CATEGORIES: tuple[str, ...] = (
    "groceries", "dining", "transport", "fuel", "shopping", "health", "utilities",
    "subscriptions", "travel", "entertainment", "cash_atm", "transfers", "income", "fees",
)
MAX_DESCRIPTION = 200  # characters; a card descriptor is 22 (+ city and state), a statement line rarely 100
CARD_DESCRIPTOR_LIMIT = 22
MAX_ROWS = 5_000_000
MIN_CLASS_ROWS = 20  # rows of each category training needs (the holdout must see every class)

_PREFIX = re.compile(
    r"^(?:(?:pos|pos purchase|purchase|checkcard|check card|debit card|debit|visa|recurring|dd)\s+"
    r"|(?:sq|tst|paypal|sp|pp|ppl|py|gglpay|apl\s*pay)\s*\*\s*)",
)
_NON_WORD = re.compile(r"[^a-z0-9&' ]+")
_SPACES = re.compile(r"\s+")
US_STATES = frozenset(
    "al ak az ar ca co ct de fl ga hi id il in ia ks ky la me md ma mi mn ms mo mt ne nv nh nj nm ny nc nd oh ok "
    "or pa ri sc sd tn tx ut vt va wa wv wi wy dc".split()
)


def normalise(text: object) -> str:
    """The normalised description: what the model reads and a correction is keyed on ('' for no letters)."""
    if not isinstance(text, str):
        return ""
    t = text[: MAX_DESCRIPTION * 2].lower().strip()
    for _ in range(3):  # stacked prefixes: "POS PAYPAL *EBAY"
        stripped = _PREFIX.sub("", t, count=1)
        if stripped == t:
            break
        t = stripped.lstrip()
    t = _NON_WORD.sub(" ", t.replace("*", " "))
    words = [w.strip("'") for w in t.split() if not any(ch.isdigit() for ch in w)]
    words = [w for w in words if w and w != "&"]
    if len(words) > 1 and words[-1] in US_STATES:
        words = words[:-1]
    return " ".join(words)


_PROCESSOR = re.compile(r"^\s*(sq|tst|paypal|pos|checkcard|sp|pp)\b", re.IGNORECASE)


def processor(text: object) -> str:
    """The card processor or channel prefix of a line (``sq``, ``tst``, ``paypal``, ``pos``, ...), or ''."""
    if not isinstance(text, str):
        return ""
    m = _PROCESSOR.match(text[:40])
    return m.group(1).lower() if m else ""


def merchant_key(text: object) -> str:
    """The key a correction rule is stored under: the normalised description."""
    return normalise(text)


def text_features(text: object, normalised: str | None = None) -> list[str]:
    """The text features of a raw description: :func:`ngrams` of its normalised form (``normalised``, when
    the caller has it already) and its processor."""
    proc = processor(text)
    out = ngrams(normalise(text) if normalised is None else normalised)
    if proc:
        out.append(f"p:{proc}")
    return out


def ngrams(normalised: str) -> list[str]:
    """The n-grams of a normalised description: character 3- to 5-grams within words (padded with a
    space at both ends) and whole words. The same list at training and serving."""
    out: list[str] = []
    for w in normalised.split():
        out.append(f"w:{w}")
        padded = f" {w} "
        n_chars = len(padded)
        for n in (3, 4, 5):
            if n_chars < n:
                break
            out.extend(padded[i : i + n] for i in range(n_chars - n + 1))
    return out


# --------------------------------------------------------------------------- the data contract


@dataclass(frozen=True)
class CategoryDataset:
    """Which column plays which role in a table of statement lines."""

    text_column: str = "description"
    amount_column: str | None = "amount"
    currency_column: str | None = "currency"
    country_column: str | None = "country"
    merchant_column: str | None = "merchant"  # for the grouped split only
    id_column: str | None = "transaction_id"
    target: str = "category"


DEFAULT_DATASET = CategoryDataset()
CURRENCIES = ("USD", "EUR", "GBP", "CAD")
COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "CA")


def dataset_from_roles(roles: Mapping[str, str], target: str, id_column: str | None) -> CategoryDataset:
    return CategoryDataset(
        text_column=roles["text"],
        amount_column=roles.get("amount"),
        currency_column=roles.get("currency"),
        country_column=roles.get("country"),
        merchant_column=roles.get("merchant"),
        id_column=id_column,
        target=target,
    )


# --------------------------------------------------------------------------- the generator

_KEYWORDS: dict[str, tuple[str, ...]] = {
    "groceries": ("MARKET", "GROCERY", "FOODS", "SUPERMARKET", "FRESH MKT", "FOOD MART"),
    "dining": ("CAFE", "COFFEE", "PIZZA", "GRILL", "KITCHEN", "RESTAURANT", "BAKERY"),
    "transport": ("TAXI", "TRANSIT", "METRO", "PARKING", "RAIL", "RIDES"),
    "fuel": ("GAS", "FUEL", "PETROL", "GAS STATION", "FUEL STOP"),
    "shopping": ("STORE", "OUTLET", "BOUTIQUE", "SHOP", "ELECTRONICS", "APPAREL", "HARDWARE"),
    "health": ("PHARMACY", "DRUG", "CLINIC", "DENTAL", "MEDICAL", "RX"),
    "utilities": ("ELECTRIC", "POWER", "WATER", "ENERGY", "WIRELESS", "INTERNET"),
    "subscriptions": ("STREAMING", "MUSIC", "PREMIUM", "CLOUD", "MEMBERSHIP", "DIGITAL"),
    "travel": ("AIRLINES", "HOTEL", "INN", "RESORT", "TRAVEL", "AIRWAYS"),
    "entertainment": ("CINEMA", "THEATER", "TICKETS", "BOWLING", "GAMES", "CONCERTS"),
    "cash_atm": ("ATM WITHDRAWAL", "ATM", "CASH WITHDRAWAL", "ATM W/D", "NON-BANK ATM"),
    "transfers": ("TRANSFER TO", "ZELLE TO", "VENMO", "ONLINE TRANSFER", "P2P TO", "WIRE TRANSFER"),
    "income": ("PAYROLL", "SALARY", "DIRECT DEP", "DIR DEP", "PAYMENT FROM", "DEPOSIT"),
    "fees": ("SERVICE FEE", "OVERDRAFT FEE", "MONTHLY FEE", "INTL TXN FEE", "LATE FEE", "ATM FEE"),
}
#: categories whose lines are bank-made: always with their keyword, never with a card processor prefix
_BANK_LINES = frozenset({"cash_atm", "transfers", "income", "fees"})
_STEMS = (
    "BLUE", "GREEN", "RED", "GOLDEN", "CITY", "OAK", "RIVER", "SUNNY", "MAPLE", "PINE", "STAR", "HAPPY", "LUCKY",
    "NORTH", "SOUTH", "EAST", "WEST", "BAY", "HILL", "LAKE", "PARK", "SILVER", "ROYAL", "URBAN", "NOBLE", "MESA",
    "CEDAR", "STONE", "BRIGHT", "FIRST", "UNION", "LIBERTY", "SUMMIT", "HARBOR", "COASTAL", "VALLEY", "ALPINE",
)
_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "tor", "zu", "bel", "dor", "nex", "qui", "sol", "tra", "vi", "xo",
              "ly", "mar", "po", "sen", "ta", "ri", "gal", "fen", "om", "cor", "dex")
_CITIES = ("OAKLAND", "SAN FRANCISCO", "NEW YORK", "BROOKLYN", "AUSTIN", "SEATTLE", "PORTLAND", "DENVER", "CHICAGO",
           "BOSTON", "MIAMI", "ATLANTA", "PHOENIX", "DALLAS", "HOUSTON", "SAN DIEGO", "LOS ANGELES", "MADISON")
_STATE_OF = {"OAKLAND": "CA", "SAN FRANCISCO": "CA", "NEW YORK": "NY", "BROOKLYN": "NY", "AUSTIN": "TX",
             "SEATTLE": "WA", "PORTLAND": "OR", "DENVER": "CO", "CHICAGO": "IL", "BOSTON": "MA", "MIAMI": "FL",
             "ATLANTA": "GA", "PHOENIX": "AZ", "DALLAS": "TX", "HOUSTON": "TX", "SAN DIEGO": "CA",
             "LOS ANGELES": "CA", "MADISON": "WI"}
_PEOPLE = ("J SMITH", "M GARCIA", "A CHEN", "L JOHNSON", "R PATEL", "S KIM", "D BROWN", "K NGUYEN", "T MILLER",
           "E DAVIS", "C WILSON", "P MARTIN")
_EMPLOYERS = ("ACME CORP", "GLOBEX INC", "INITECH", "UMBRELLA LLC", "STARK IND", "WAYNE ENT", "HOOLI", "VANDELAY")
_BANKS = ("CHASE", "WELLS", "BOFA", "CITI", "PNC", "US BANK", "ALLPOINT", "CARDTRONICS")
#: log-normal amount (mu, sigma) per category
_AMOUNTS: dict[str, tuple[float, float]] = {
    "groceries": (3.8, 0.6), "dining": (3.0, 0.6), "transport": (2.7, 0.7), "fuel": (3.7, 0.3),
    "shopping": (3.9, 0.9), "health": (3.5, 0.9), "utilities": (4.5, 0.5), "subscriptions": (2.5, 0.5),
    "travel": (5.5, 0.8), "entertainment": (3.3, 0.6), "cash_atm": (4.4, 0.6), "transfers": (4.6, 1.0),
    "income": (7.6, 0.4), "fees": (2.6, 0.6),
}
MERCHANTS_PER_CATEGORY = 40
UNIVERSE_SEED = 20_260_301  # the merchant universe is fixed: weekly data sees the same merchants, new lines


@dataclass(frozen=True)
class Merchant:
    name: str
    category: str
    processor: str  # "" or a card processor prefix
    city: str
    popularity: float


def _brand(rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return str(rng.choice(_STEMS)) + " " + str(rng.choice(_STEMS))
    n = int(rng.integers(2, 4))
    return "".join(str(s) for s in rng.choice(_SYLLABLES, n)).upper()


def merchant_universe() -> list[Merchant]:
    """The fixed, seeded set of merchants (40 per category, 560 in all)."""
    rng = np.random.default_rng(UNIVERSE_SEED)
    out: list[Merchant] = []
    seen: set[str] = set()
    for category in CATEGORIES:
        words = _KEYWORDS[category]
        made = 0
        while made < MERCHANTS_PER_CATEGORY:
            keyword = str(rng.choice(words))
            if category == "cash_atm":
                name = f"{keyword} {rng.choice(_BANKS)}"
            elif category == "transfers":
                name = f"{keyword} {rng.choice(_PEOPLE)}" if rng.random() < 0.7 else f"{keyword} {rng.choice(_BANKS)}"
            elif category == "income":
                name = f"{rng.choice(_EMPLOYERS)} {keyword}" if rng.random() < 0.6 else f"{keyword} {rng.choice(_EMPLOYERS)}"
            elif category == "fees":
                name = keyword if rng.random() < 0.5 else f"{keyword} {rng.choice(_BANKS)}"
            elif rng.random() < 0.78:  # most merchants say what they sell; some are a bare brand
                name = f"{_brand(rng)} {keyword}"
            else:
                name = _brand(rng)
            if name in seen:
                continue
            seen.add(name)
            processor = ""
            if category not in _BANK_LINES:
                r = rng.random()
                if category == "dining":
                    processor = "SQ *" if r < 0.35 else "TST* " if r < 0.6 else "POS " if r < 0.8 else ""
                elif category in ("shopping", "subscriptions", "entertainment"):
                    processor = "PAYPAL *" if r < 0.3 else "SQ *" if r < 0.4 else "POS " if r < 0.7 else ""
                else:
                    processor = "POS " if r < 0.4 else "CHECKCARD " if r < 0.55 else "SQ *" if r < 0.62 else ""
            out.append(Merchant(name, category, processor, str(rng.choice(_CITIES)), float(rng.lognormal(0.0, 0.7))))
            made += 1
    return out


def _descriptor(m: Merchant, rng: np.random.Generator) -> str:
    """One statement line of merchant ``m``, with the noise real descriptors carry."""
    if m.category in _BANK_LINES:
        text = m.name
        if rng.random() < 0.6:
            text += f" {int(rng.integers(0, 999_999)):06d}" if m.category != "fees" else ""
        if m.category == "income" and rng.random() < 0.5:
            text += f" PPD ID: {int(rng.integers(10**8, 10**9))}"
        if m.category == "cash_atm" and rng.random() < 0.5:
            text += f" {m.city}"
    else:
        head = m.processor + m.name
        if rng.random() < 0.5:
            head += f" #{int(rng.integers(1, 9999)):04d}" if rng.random() < 0.5 else f" {int(rng.integers(1, 9999)):04d}"
        if m.processor.startswith("CHECKCARD"):
            head = f"CHECKCARD {int(rng.integers(101, 1231)):04d} " + head.removeprefix("CHECKCARD ")
        head = head[:CARD_DESCRIPTOR_LIMIT]  # the card network's merchant name field
        text = head
        if rng.random() < 0.7:
            text = f"{head} {m.city[:13]} {_STATE_OF[m.city]}"
    r = rng.random()
    if r < 0.08:
        text = text.title()
    elif r < 0.14:
        text = text.lower()
    r = rng.random()
    if r < 0.08:
        text = text.replace(" ", "  ", 1)
    elif r < 0.12:
        text = " " + text + " "
    return text


def generate_statement_lines(n_rows: int = 20_000, seed: int = 42) -> pd.DataFrame:
    """Deterministic, seeded statement lines: transaction_id, description, amount, currency, country,
    category, and the merchant a line came from (for the merchant-grouped split only)."""
    if not 1 <= n_rows <= MAX_ROWS:
        raise DataError(f"rows must be between 1 and {MAX_ROWS:,}, not {n_rows}")
    merchants = merchant_universe()
    rng = np.random.default_rng(seed)
    weights = np.asarray([m.popularity for m in merchants])
    # every category gets a fair share of lines whatever its merchants' popularity
    per_cat = {c: np.flatnonzero([m.category == c for m in merchants]) for c in CATEGORIES}
    cat_share = np.asarray([0.14, 0.14, 0.07, 0.06, 0.12, 0.05, 0.05, 0.06, 0.05, 0.05, 0.05, 0.06, 0.04, 0.06])
    cat_share = cat_share / cat_share.sum()
    cats = rng.choice(len(CATEGORIES), size=n_rows, p=cat_share)
    picks = np.empty(n_rows, dtype=np.int64)
    for ci, c in enumerate(CATEGORIES):
        rows = np.flatnonzero(cats == ci)
        idx = per_cat[c]
        w = weights[idx] / weights[idx].sum()
        picks[rows] = rng.choice(idx, size=len(rows), p=w)
    descriptions: list[str] = []
    amounts = np.empty(n_rows)
    currency = np.empty(n_rows, dtype=object)
    country = np.empty(n_rows, dtype=object)
    foreign = [("GB", "GBP"), ("DE", "EUR"), ("FR", "EUR"), ("ES", "EUR"), ("IT", "EUR"), ("CA", "CAD")]
    for i, mi in enumerate(picks.tolist()):
        m = merchants[mi]
        descriptions.append(_descriptor(m, rng))
        mu, sigma = _AMOUNTS[m.category]
        a = float(rng.lognormal(mu, sigma))
        if m.category == "cash_atm":
            a = float(max(20, round(a / 20) * 20))
        elif m.category == "subscriptions":
            a = float(np.floor(a)) + 0.99
        amounts[i] = round(min(a, 250_000.0), 2)
        p_foreign = 0.4 if m.category == "travel" else 0.04
        if rng.random() < p_foreign:
            country[i], currency[i] = foreign[int(rng.integers(0, len(foreign)))]
        else:
            country[i], currency[i] = "US", "USD"
    return pd.DataFrame({
        "transaction_id": [f"t-{seed % 100_000:05d}-{i:07d}" for i in range(n_rows)],
        "description": descriptions,
        "amount": amounts,
        "currency": currency,
        "country": country,
        "category": [merchants[i].category for i in picks.tolist()],
        "merchant": [merchants[i].name for i in picks.tolist()],
    })


def category_spec(name: str = "transaction-category") -> object:
    """The dataset spec of the generated statement lines."""
    from features.spec import ColumnSpec, DatasetSpec

    return DatasetSpec(
        name=name,
        target="category",
        positive_label=None,
        classes=CATEGORIES,
        columns=(
            ColumnSpec("description", "categorical"),
            ColumnSpec("amount", "numeric", min=0.0, max=1_000_000.0),
            ColumnSpec("currency", "categorical", values=CURRENCIES),
            ColumnSpec("country", "categorical", values=COUNTRIES),
        ),
        id_column="transaction_id",
        passthrough=("merchant",),
        roles={"text": "description", "amount": "amount", "currency": "currency", "country": "country",
               "merchant": "merchant"},
        min_rows=200,
    )


# --------------------------------------------------------------------------- a user's table

_TEXT_NAMES = ("description", "desc", "memo", "narrative", "details", "payee", "merchant_name", "name", "text")


def guess_roles(columns: Sequence[str], text_column: str | None) -> dict[str, str]:
    """Roles recognised by column name (case-insensitive); ``text_column`` (``--text-column``) wins."""
    lower = {str(c).lower(): str(c) for c in columns}
    roles: dict[str, str] = {}
    text = text_column or next((lower[n] for n in _TEXT_NAMES if n in lower), None)
    if text is None:
        raise DataError(
            f"no description column found among {list(columns)}; pass --text-column COLUMN (the statement line text)"
        )
    if text not in columns:
        raise DataError(f"--text-column '{text}' is not in the data; columns are {list(columns)}")
    roles["text"] = text
    for role, names in (("amount", ("amount", "amt", "value")), ("currency", ("currency", "ccy")),
                        ("country", ("country", "country_code")), ("merchant", ("merchant", "merchant_id"))):
        found = next((lower[n] for n in names if n in lower and lower[n] != text), None)
        if found is not None:
            roles[role] = found
    return roles
