"""The label codecs: one definition of what an outcome means, from training to monitoring.

One codec per target kind (:data:`LabelKind`): binary (:class:`LabelCodec`, below), categories
(:class:`CategoryCodec`: the canonical form of a category is its own name) and numbers
(:class:`NumericCodec`, regression targets: the canonical form is the number's text); each
satisfies :class:`OutcomeCodec`, which is what the spec, feedback, monitoring and the expectation
suite use instead of branching on the target's shape.

Canonical form: the string ``"1"`` for the positive class (the event the model scores, e.g.
a default) and ``"0"`` for the negative class, ALWAYS, whatever the dataset calls them.
Training labels are encoded to 1/0 with it, feedback is stored in it, and monitoring
decodes it to 1/0 again.

A user gives an outcome in their own terms: the dataset's label values (``"bad"``,
``"good"``) or the canonical ``0``/``1``. When the dataset itself uses ``"0"``/``"1"``
(or one of them), the dataset's meaning wins: with positive label ``"0"``, an outcome
``"0"`` is the positive class (canonical ``"1"``), so nothing is inverted relative to the
training data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from ledgerline.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

POSITIVE = "1"
NEGATIVE = "0"
CANONICAL = (NEGATIVE, POSITIVE)
#: the column of a conformed frame holding the encoded target (``encode_training``)
LABEL_COLUMN = "__label__"
#: what a spec's target holds: an event (binary), one of several classes, or a number
LabelKind = Literal["binary", "multiclass", "numeric"]
LABEL_KINDS: tuple[LabelKind, ...] = ("binary", "multiclass", "numeric")
#: pandas dtypes of an encoded label column, per kind of encoding
INTEGER_LABEL_TYPES: tuple[str, ...] = ("int64", "int32", "int16", "int8", "uint8", "Int64")
FLOAT_LABEL_TYPES: tuple[str, ...] = ("float64", "float32", "Float64", "Float32")


@dataclass(frozen=True)
class LabelDomain:
    """What a conformed frame's target may hold, as the codec encodes it (the expectation suite checks it).

    ``dtypes``: the encoded column's allowed dtypes; ``values``: its allowed values (None: any);
    ``min_value``/``max_value``: its range (None: open); ``target_values``: the raw target's allowed
    values (None: any), each of which must also occur when ``all_present``.
    """

    dtypes: tuple[str, ...]
    values: tuple[int, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    target_values: tuple[str, ...] | None = None
    all_present: bool = False


class LabelError(ValueError):
    """A user's outcome value is not one the codec knows; ``allowed`` lists the accepted values."""

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


@runtime_checkable
class OutcomeCodec(Protocol):
    """What feedback and monitoring need of a codec, binary or categorical."""

    @property
    def target(self) -> str: ...
    @property
    def allowed_values(self) -> tuple[str, ...]: ...
    def describe(self) -> str: ...
    def accept(self, value: object) -> str: ...
    def decode(self, canonical: str) -> Any: ...
    def encode_training(self, series: pd.Series) -> np.ndarray: ...
    def target_column(self, series: pd.Series) -> pd.Series: ...
    @property
    def kind(self) -> LabelKind: ...
    def domain(self) -> LabelDomain: ...


class _HasLabels(Protocol):
    """The part of a dataset spec the codec reads."""

    @property
    def target(self) -> str: ...
    @property
    def positive_label(self) -> str: ...
    @property
    def negative_labels(self) -> Iterable[str]: ...


@dataclass(frozen=True)
class LabelCodec:
    """Binary labels of one dataset: ``positive_label`` is the event, ``negative_labels`` the rest.

    ``negative_labels`` may be empty for a spec written before they were recorded: then every
    value other than the positive label is negative at training, and feedback accepts only
    the positive label and the canonical 0/1.
    """

    target: str
    positive_label: str
    negative_labels: tuple[str, ...] = ()
    #: a family's own words for the outcomes (e.g. ``("fraud", "1"), ("legitimate", "0")``): alias -> canonical;
    #: accepted after the dataset's labels, and never in place of one of them
    aliases: tuple[tuple[str, str], ...] = ()
    _table: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pos = str(self.positive_label)
        negs = tuple(str(v) for v in self.negative_labels)
        if pos in negs:
            raise DataError(f"label '{pos}' of '{self.target}' cannot be both the positive and a negative label")
        if not negs and pos in CANONICAL:  # a 0/1 dataset: the other token is the negative class
            negs = (POSITIVE if pos == NEGATIVE else NEGATIVE,)
        object.__setattr__(self, "positive_label", pos)
        object.__setattr__(self, "negative_labels", negs)
        table = {pos: POSITIVE, **{n: NEGATIVE for n in negs}}
        aliases = tuple((str(a), str(c)) for a, c in self.aliases)
        for alias, canonical in aliases:
            if canonical not in CANONICAL:
                raise DataError(f"label alias '{alias}' of '{self.target}' must map to '1' or '0', not {canonical!r}")
            table.setdefault(alias, canonical)
        object.__setattr__(self, "aliases", aliases)
        for token in (POSITIVE, NEGATIVE):  # 0/1 aliases only where they do not collide with the dataset's own values
            table.setdefault(token, token)
        object.__setattr__(self, "_table", table)

    @classmethod
    def from_spec(cls, spec: _HasLabels) -> LabelCodec:
        return cls(spec.target, spec.positive_label, tuple(spec.negative_labels))

    @classmethod
    def canonical_only(cls, target: str = "label") -> LabelCodec:
        """A codec knowing nothing but the canonical 0/1 (1 = the positive class)."""
        return cls(target, POSITIVE, (NEGATIVE,))

    def with_aliases(self, positive: Iterable[str] = (), negative: Iterable[str] = ()) -> LabelCodec:
        """This codec also accepting ``positive``/``negative`` words (e.g. an analyst's "fraud"/"legitimate")."""
        extra = tuple((a, POSITIVE) for a in positive) + tuple((a, NEGATIVE) for a in negative)
        return LabelCodec(self.target, self.positive_label, self.negative_labels, self.aliases + extra)

    # --- training ----------------------------------------------------------------------------
    def encode_training(self, series: pd.Series) -> np.ndarray:
        """Raw target values -> int64 array, 1 for the positive label and 0 otherwise.

        With recorded negative labels, a value that is neither raises DataError (a new
        snapshot must not silently relabel an unseen class as negative).
        """
        values = series.astype(str)
        if self.negative_labels:
            known = {self.positive_label, *self.negative_labels}
            unknown = sorted(set(values.unique()) - known)
            if unknown:
                raise DataError(
                    f"target column '{self.target}' has values {unknown[:5]} the spec does not know; its labels are "
                    f"'{self.positive_label}' (positive) and {list(self.negative_labels)} (negative): fix the data, "
                    f"or train a new --model-name for a different labelling"
                )
        return (values == self.positive_label).to_numpy(dtype=np.int64)

    # --- feedback ----------------------------------------------------------------------------
    @property
    def allowed_values(self) -> tuple[str, ...]:
        """What ``accept`` takes: the dataset's labels first (positive, then negatives), then 0/1 aliases."""
        return tuple(self._table)

    def describe(self) -> str:
        """The allowed values with their meaning, for error messages and API docs."""
        parts = []
        for value, canonical in self._table.items():
            meaning = "positive" if canonical == POSITIVE else "negative"
            parts.append(f"'{value}' ({meaning})")
        return ", ".join(parts)

    def accept(self, value: object) -> str:
        """A user's outcome -> the canonical ``"1"``/``"0"``; LabelError names the allowed values."""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise LabelError(f"label {value!r} must be a string or an integer; use one of {self.describe()}", self.allowed_values)
        text = str(value).strip()
        found = self._table.get(text)
        if found is None:  # case-insensitive, when that is unambiguous
            folded = [c for v, c in self._table.items() if v.casefold() == text.casefold()]
            if len(set(folded)) == 1:
                found = folded[0]
        if found is None:
            raise LabelError(
                f"label {value!r} is not an outcome of '{self.target}'; use one of {self.describe()}", self.allowed_values
            )
        return found

    # --- monitoring --------------------------------------------------------------------------
    @staticmethod
    def decode(canonical: str) -> int:
        """A stored canonical label -> 1 (positive) or 0; ValueError for anything else."""
        text = str(canonical).strip()
        if text == POSITIVE:
            return 1
        if text == NEGATIVE:
            return 0
        raise ValueError(f"stored label {canonical!r} is not canonical ('1' or '0')")

    def target_column(self, series: pd.Series) -> pd.Series:
        """The target as a conformed frame keeps it beside the encoded label: the values as text."""
        return series.astype(str)

    @property
    def kind(self) -> LabelKind:
        return "binary"

    def domain(self) -> LabelDomain:
        """Encoded: 1 for the positive label, 0 otherwise."""
        return LabelDomain(INTEGER_LABEL_TYPES, values=(0, 1))


@dataclass(frozen=True)
class CategoryCodec:
    """A multiclass target (e.g. spending categories): the canonical form of an outcome is the class
    name itself, exactly as the training data spells it. Feedback accepts a class name (also in
    another letter case, when unambiguous); monitoring decodes it to the class name again."""

    target: str
    classes: tuple[str, ...]
    _folded: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise DataError(f"the classes of '{self.target}' must be at least two distinct values, not {list(classes)}")
        object.__setattr__(self, "classes", classes)
        folded: dict[str, str] = {}
        for c in classes:
            folded[c.casefold()] = c if c.casefold() not in folded else ""
        object.__setattr__(self, "_folded", folded)

    @property
    def allowed_values(self) -> tuple[str, ...]:
        return self.classes

    def describe(self) -> str:
        return ", ".join(f"'{c}'" for c in self.classes)

    def accept(self, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, str):
            raise LabelError(f"label {value!r} must be a category name; use one of {self.describe()}", self.classes)
        text = value.strip()
        if text in self.classes:
            return text
        found = self._folded.get(text.casefold())
        if not found:
            raise LabelError(f"label {value!r} is not a category of '{self.target}'; use one of {self.describe()}", self.classes)
        return found

    def decode(self, canonical: str) -> str:
        text = str(canonical)
        if text not in self.classes:
            raise ValueError(f"stored label {canonical!r} is not a category of '{self.target}'")
        return text

    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def target_column(self, series: pd.Series) -> pd.Series:
        """The target as a conformed frame keeps it beside the encoded label: the values as text."""
        return series.astype(str)

    @property
    def kind(self) -> LabelKind:
        return "multiclass"

    def domain(self) -> LabelDomain:
        """Encoded: the class index; every class present in the data (the holdout must measure each)."""
        return LabelDomain(INTEGER_LABEL_TYPES, min_value=0, max_value=len(self.classes) - 1,
                           target_values=self.classes, all_present=True)

    def encode_training(self, series: pd.Series) -> np.ndarray:
        """Class names -> int64 class indices (in ``classes`` order); an unknown class is a DataError."""
        values = series.astype(str)
        unknown = sorted(set(values.unique()) - set(self.classes))
        if unknown:
            raise DataError(
                f"target column '{self.target}' has values {unknown[:5]} that are not among the model's categories "
                f"{list(self.classes)}; fix the data, or train a new --model-name for a different set of categories"
            )
        return values.map(self.index()).to_numpy(dtype=np.int64)


@dataclass(frozen=True)
class NumericCodec:
    """A numeric target (regression: a price, a value, a yield). An outcome is the realised value: a
    finite number, or text that parses as one; its canonical form is the shortest text that reads back
    as the same float (``repr``), so ``decode(accept(x)) == float(x)``."""

    target: str

    @property
    def allowed_values(self) -> tuple[str, ...]:
        """Any finite number: no list of values."""
        return ()

    @property
    def kind(self) -> LabelKind:
        return "numeric"

    def describe(self) -> str:
        return "a number"

    def accept(self, value: object) -> str:
        """A realised value -> its canonical text; LabelError for anything but a finite number."""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise LabelError(
                f"label {value!r} of '{self.target}' must be a number (the realised value), e.g. 250000 or \"250000.5\"", ()
            )
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (ValueError, OverflowError):
            raise LabelError(
                f"label {value!r} is not a number; '{self.target}' takes the realised value as a number, e.g. 250000", ()
            ) from None
        if not math.isfinite(number):
            raise LabelError(f"label {value!r} of '{self.target}' must be a finite number, not {number}", ())
        return repr(number)

    def decode(self, canonical: str) -> float:
        """A stored canonical value -> the float; ValueError for anything else."""
        try:
            number = float(str(canonical).strip())
        except ValueError:
            raise ValueError(f"stored label {canonical!r} of '{self.target}' is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"stored label {canonical!r} of '{self.target}' is not a finite number")
        return number

    def encode_training(self, series: pd.Series) -> np.ndarray:
        """Target values -> float64; missing, non-numeric or infinite values are a DataError naming examples."""
        import pandas as pd

        if pd.api.types.is_bool_dtype(series):
            raise DataError(f"target column '{self.target}' holds true/false values; a numeric target holds numbers")
        values = pd.to_numeric(series, errors="coerce").astype("float64")
        bad = values.isna() | ~np.isfinite(values.to_numpy())
        if bad.any():
            examples = [str(v) for v in pd.unique(series[bad])[:3]]
            raise DataError(
                f"target column '{self.target}' has {int(bad.sum())} values that are not finite numbers "
                f"(e.g. {examples}); drop those rows or fix the values"
            )
        return values.to_numpy(dtype=np.float64)

    def target_column(self, series: pd.Series) -> pd.Series:
        """The target as a conformed frame keeps it: the numbers as float64 (junk raises, see ``encode_training``)."""
        import pandas as pd

        return pd.Series(self.encode_training(series), index=series.index, name=series.name)

    def domain(self) -> LabelDomain:
        return LabelDomain(FLOAT_LABEL_TYPES)
