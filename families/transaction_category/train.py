"""Transaction categorisation as a family plug-in: a multiclass target (the category), a holdout
grouped by merchant (no merchant on both sides: the metrics measure merchants never seen before),
a linear model on character n-grams of the normalised description plus the amount and the other
columns (two candidates compared, probabilities calibrated), gated on macro-F1 (floor, and
tolerance against the champion) and on the lowest per-class recall.

Users' corrections: :meth:`augment` adds the labelled lines of the prediction log (predictions
joined with their feedback: corrections and confirmations) to the raw data before the snapshot
is written, with ids ``corr-<prediction_id>``; the split keeps them on the training side and
training weights them ``correction_weight`` times. :meth:`lineage` reports them on the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ledgerline.errors import DataError
from ledgerline.families import GatePolicy, MetricRule, TargetKind
from training.family import FamilyParams, Report, TrainingFamilyBase, TrainOption
from training.model_logging import log_skops_model, typed_params

if TYPE_CHECKING:
    import pandas as pd

    from expectations.family import FamilyExpectations
    from families.transaction_category.model import CategoryModel
    from features.spec import DatasetSpec, PartialSpec
    from ledgerline.settings import Settings
    from training.cards import CardParts
    from training.sources.window import Interval

SKOPS_TRUSTED_TYPES = ["families.transaction_category.model.CategoryModel"]
TEST_FRACTION = 0.2
CORRECTION_PREFIX = "corr-"
#: default gate: macro-F1 floor, tolerance against the champion, and the lowest class recall's floor
MIN_MACRO_F1 = 0.60
MACRO_F1_TOLERANCE = 0.03
MIN_CLASS_RECALL = 0.20
MAX_CLASSES = 200


def dataset(spec: DatasetSpec) -> Any:
    from families.transaction_category.data import dataset_from_roles

    if "text" not in spec.roles:
        raise DataError(f"spec '{spec.name}' names no text column (roles: {{text: COLUMN}}, or --text-column)")
    return dataset_from_roles(spec.roles, spec.target or "category", spec.id_column)


def model_columns(spec: DatasetSpec) -> Any:
    from families.transaction_category.fit import Columns

    text = spec.roles["text"]
    return Columns(
        text=text,
        numeric=tuple(c for c in spec.numeric),
        categorical=tuple(c for c in spec.categorical if c != text),
    )


def split_groups(frame: pd.DataFrame, spec: DatasetSpec) -> Any:
    """The group of each row for the split: its merchant column, else its normalised description."""
    from families.transaction_category.data import merchant_key

    merchant = spec.roles.get("merchant")
    if merchant and merchant in frame.columns:
        keys = frame[merchant].astype(str)
        text = frame[spec.roles["text"]].map(merchant_key)
        return keys.where(frame[merchant].notna(), text).to_numpy()
    return frame[spec.roles["text"]].map(merchant_key).to_numpy()


def corrected_rows(frame: pd.DataFrame, spec: DatasetSpec) -> Any:
    import numpy as np

    if not spec.id_column or spec.id_column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame[spec.id_column].astype(str).str.startswith(CORRECTION_PREFIX).to_numpy()


class TransactionCategoryFamily(TrainingFamilyBase["CategoryModel"]):
    name = "transaction-category"
    target_kind: TargetKind = "multiclass"
    test_fraction = TEST_FRACTION
    headline_metrics = ("macro_f1", "accuracy", "top3_accuracy", "min_class_recall", "log_loss", "ece")
    train_options = (
        TrainOption("--text-column", "the column holding the statement line text", role="text", example="memo"),
    )

    # --- data contract --------------------------------------------------------------
    def default_spec(self, model_name: str) -> DatasetSpec:
        from families.transaction_category.data import category_spec

        return category_spec(model_name)  # type: ignore[return-value]

    def generate(self, rows: int, seed: int) -> pd.DataFrame:
        from families.transaction_category.data import generate_statement_lines

        return generate_statement_lines(rows, seed)

    def infer_spec(
        self, raw: pd.DataFrame, *, target: str | None, positive_label: str | None, partial: PartialSpec, name: str
    ) -> DatasetSpec:
        from families.transaction_category.data import MAX_DESCRIPTION, guess_roles
        from features.spec import MAX_CATEGORIES, ColumnSpec, DatasetSpec, coerce_numeric, is_numeric_series

        target = target or partial.target
        if target is None:
            raise DataError("no category column given; pass --target COLUMN (the category of each line)")
        if target not in raw.columns:
            raise DataError(f"target column '{target}' is not in the data; columns are {list(raw.columns)}")
        if raw[target].isna().any():
            raise DataError(f"target column '{target}' has {int(raw[target].isna().sum())} missing values; drop or fill them")
        classes = tuple(partial.classes) or tuple(sorted({str(v) for v in raw[target].unique()}))
        if not 2 <= len(classes) <= MAX_CLASSES:
            raise DataError(f"target column '{target}' has {len(classes)} categories; categorisation needs 2 to {MAX_CLASSES}")
        columns = [str(c) for c in raw.columns]
        roles = guess_roles(columns, partial.roles.get("text"))
        roles.update({k: v for k, v in partial.roles.items() if v in columns})
        id_column = partial.id_column
        if id_column is None:
            id_column = next((c for c in columns if c.lower() in ("id", "transaction_id", "txn_id", "line_id")
                              and raw[c].notna().all() and raw[c].is_unique), None)
        skip = {target, *partial.drop, *([id_column] if id_column else [])}
        merchant = roles.get("merchant")
        passthrough = tuple(c for c in [merchant] if c and c not in skip and c != roles["text"])
        skip.update(passthrough)
        cols: list[ColumnSpec] = []
        for c in columns:
            if c in skip:
                continue
            s = raw[c]
            override = partial.columns.get(c, {})
            nulls = float(s.isna().mean())
            allowed = min(1.0, round(max(nulls * 2, nulls + 0.05), 4)) if nulls > 0 else 0.0
            if c == roles["text"]:
                too_long = int(s.dropna().astype(str).str.len().gt(MAX_DESCRIPTION).sum())
                if too_long:
                    raise DataError(f"column '{c}' has {too_long} descriptions longer than {MAX_DESCRIPTION} characters; shorten them")
                cols.append(ColumnSpec(c, "categorical", max_null_fraction=float(override.get("max_null_fraction", allowed))))
            elif override.get("type", "numeric" if is_numeric_series(s) else "categorical") == "numeric":
                num = coerce_numeric(s, c)
                lo, hi = (float(num.min()), float(num.max())) if num.notna().any() else (0.0, 0.0)
                span = max(hi - lo, 1.0)
                cols.append(ColumnSpec(c, "numeric", min=override.get("min", lo - 0.25 * span), max=override.get("max", hi + 0.25 * span),
                                       max_null_fraction=float(override.get("max_null_fraction", allowed))))
            else:
                values = sorted({str(v) for v in s.dropna().unique()})
                if len(values) > MAX_CATEGORIES and "values" not in override:
                    raise DataError(
                        f"column '{c}' has {len(values)} distinct text values (limit {MAX_CATEGORIES}); drop it "
                        f"(drop: [{c}] in a --spec file), or pass it as --text-column if it is the description"
                    )
                cols.append(ColumnSpec(c, "categorical", values=tuple(str(v) for v in override.get("values", values)),
                                       max_null_fraction=float(override.get("max_null_fraction", allowed))))
        return DatasetSpec(
            name=partial.name or name, target=target, positive_label=None, classes=classes, columns=tuple(cols),
            id_column=id_column, drop=tuple(partial.drop), passthrough=passthrough, roles=roles,
            min_rows=partial.min_rows if partial.min_rows is not None else min(200, len(raw)),
        )

    def conform(self, raw: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        import pandas as pd

        from families.transaction_category.data import MIN_CLASS_ROWS
        from features.spec import LABEL_COLUMN, coerce_numeric

        dataset(spec)
        missing = [c for c in (*spec.feature_names, *spec.passthrough, *([spec.target] if spec.target else [])) if c not in raw.columns]
        if missing:
            raise DataError(f"the data lacks columns {missing} that the spec requires; columns are {list(raw.columns)}")
        out = pd.DataFrame(index=raw.index)
        if spec.id_column:
            if spec.id_column not in raw.columns:
                raise DataError(f"id column '{spec.id_column}' is not in the data; columns are {list(raw.columns)}")
            out[spec.id_column] = raw[spec.id_column].astype(str)
        for col in spec.columns:
            s = raw[col.name]
            if col.kind == "numeric":
                out[col.name] = coerce_numeric(s, col.name)
            else:
                out[col.name] = s.astype(str).astype("object").where(s.notna(), None)
        for name in spec.passthrough:
            out[name] = raw[name]
        if spec.target is not None:
            if raw[spec.target].isna().any():
                raise DataError(f"target column '{spec.target}' has {int(raw[spec.target].isna().sum())} missing values; drop or fill them")
            out[spec.target] = raw[spec.target].astype(str)
            out[LABEL_COLUMN] = spec.label_codec.encode_training(raw[spec.target])
            counts = out[spec.target].value_counts()
            thin = {c: int(counts.get(c, 0)) for c in spec.classes if counts.get(c, 0) < MIN_CLASS_ROWS}
            if thin:
                raise DataError(
                    f"categories {sorted(thin)} have fewer than {MIN_CLASS_ROWS} lines ({thin}); every category needs "
                    f"{MIN_CLASS_ROWS} so the holdout can measure it: add lines, or merge those categories"
                )
        return out.reset_index(drop=True)

    def split(self, frame: pd.DataFrame, spec: DatasetSpec, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        from families.transaction_category.fit import grouped_split

        forced = corrected_rows(frame, spec).nonzero()[0]
        train_idx, test_idx = grouped_split(split_groups(frame, spec), TEST_FRACTION, seed, forced)
        if len(test_idx) == 0 or len(train_idx) == 0:
            raise DataError("the data has too few merchants to hold some out; add lines of more merchants")
        return frame.iloc[train_idx], frame.iloc[test_idx]

    # --- train / evaluate -------------------------------------------------------------
    def params(self, seed: int, overrides: Mapping[str, object] | None) -> FamilyParams:
        from families.transaction_category.fit import CategoryParams

        return typed_params(CategoryParams(seed=seed), self.name, overrides)

    def train(self, frame: pd.DataFrame, spec: DatasetSpec, params: FamilyParams) -> CategoryModel:
        import numpy as np

        from families.transaction_category import fit as category
        from features.spec import LABEL_COLUMN

        assert isinstance(params, category.CategoryParams)
        frame = frame.reset_index(drop=True)
        corrected = corrected_rows(frame, spec)
        weights = np.where(corrected, params.correction_weight, 1.0)
        return category.train(
            frame, frame[LABEL_COLUMN].to_numpy(), model_columns(spec), list(spec.classes), params,
            groups=split_groups(frame, spec), weights=weights, corrected=np.flatnonzero(corrected),
        )

    def evaluate(self, model: CategoryModel, frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, float]:
        from families.transaction_category import fit as category
        from features.spec import LABEL_COLUMN

        return category.evaluate(model, frame, frame[LABEL_COLUMN].to_numpy())

    def card_parts(self, model: CategoryModel, frame: pd.DataFrame, spec: DatasetSpec, settings: Settings) -> CardParts:
        """Holdout accuracy, macro-F1 and top-3 accuracy on merchants unseen at training, with bootstrap intervals."""
        import numpy as np
        from sklearn.metrics import f1_score

        from features.spec import LABEL_COLUMN
        from training import cards

        proba = model.predict_proba(frame)
        y = np.asarray(frame[LABEL_COLUMN].to_numpy(), dtype=int)
        pred = proba.argmax(axis=1)
        top3 = (np.argsort(-proba, axis=1)[:, :3] == y[:, None]).any(axis=1)
        labels = np.arange(proba.shape[1])

        def metrics_of(idx: np.ndarray) -> dict[str, float]:
            return {
                "accuracy": float((pred[idx] == y[idx]).mean()),
                "macro_f1": float(f1_score(y[idx], pred[idx], labels=labels, average="macro", zero_division=0)),
                "top3_accuracy": float(top3[idx].mean()),
            }

        classes = list(model.classes_)
        return cards.CardParts(
            intended_use=(
                "Categorises bank-statement lines (e.g. 'SQ *BLUE BOTTLE 0421 OAKLAND CA' -> dining) for budgeting "
                "views, with the top 3 candidates; it abstains below its confidence threshold, and users' corrections "
                "become rules for the merchant at once and training data at the next retrain."
            ),
            metrics=cards.bootstrap(len(y), metrics_of, rounds=100, seed=7) if len(y) else {},
            limitations=[
                "merchants unseen at training are categorised from their descriptor's n-grams alone (the holdout measures this)",
                "one merchant can sell several categories (a supermarket's pharmacy); a rule applies to the whole merchant",
                "descriptors in other languages or scripts than the training data are categorised poorly",
            ],
            watched=[
                "live accuracy and macro-F1 on corrected and confirmed lines",
                "the correction rate and the volume of new corrections",
                "PSI of the predicted-category distribution against the holdout's",
            ],
            model_facts={
                "model": f"linear model on character n-grams ({getattr(model, 'candidate_', 'chosen candidate')}), "
                         "temperature-calibrated",
                "classes": ", ".join(classes),
            },
        )

    def report(
        self, model: CategoryModel, frame: pd.DataFrame, spec: DatasetSpec, metrics: Mapping[str, float]
    ) -> Report:
        from families.transaction_category import fit as category
        from features.spec import LABEL_COLUMN

        y = frame[LABEL_COLUMN].to_numpy()
        per_class = {k.removeprefix("recall_"): v for k, v in metrics.items() if k.startswith("recall_")}
        return Report(
            figures={
                "plots/confusion_matrix.png": category.confusion_figure(model, frame, y),
                "plots/calibration.png": category.reliability_figure(model, frame, y),
            },
            documents={
                "evaluation/candidates.json": dict(model.comparison_),
                "evaluation/recall_per_class.json": dict(per_class),
            },
        )

    # --- gate ---------------------------------------------------------------------------
    def gate_policy(self, settings: Settings) -> GatePolicy:
        return GatePolicy(
            (
                MetricRule("macro_f1", "higher", bound=MIN_MACRO_F1, tolerance=MACRO_F1_TOLERANCE),
                MetricRule("min_class_recall", "higher", bound=MIN_CLASS_RECALL),
            )
        )

    # --- corrections ----------------------------------------------------------------------
    def expectations(self) -> FamilyExpectations:
        from families.transaction_category.expectations import EXPECTATIONS

        return EXPECTATIONS

    def augment(self, settings: Settings, model_name: str, raw: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, str]:
        """``raw`` with the users' labelled lines of ``model_name`` appended (see the module docstring)."""
        import pandas as pd

        from families.transaction_category.corrections import labelled_lines

        lines = labelled_lines(settings.resolved_app_db_url(), model_name, spec)
        if lines.empty:
            return raw, ""
        if spec.id_column is None:
            lines = lines.drop(columns=["__id__"])
        else:
            lines = lines.rename(columns={"__id__": spec.id_column})
        corrections = int(lines.pop("__corrected__").sum())
        merchant = spec.roles.get("merchant")
        if merchant and merchant in raw.columns and merchant not in lines.columns:
            lines[merchant] = lines[spec.roles["text"]]
        lines = lines[[c for c in raw.columns if c in lines.columns]]
        out = pd.concat([raw, lines], ignore_index=True)
        return out, f"feedback:{len(lines)} labelled lines ({corrections} corrections)"

    def lineage(self, frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, str]:
        """Run tags saying how many of the snapshot's lines are users' labelled lines."""
        n = int(corrected_rows(frame, spec).sum())
        return {"ledgerline.corrections.lines": str(n), "ledgerline.corrections.id_prefix": CORRECTION_PREFIX}

    def production_rows(
        self, settings: Settings, model_name: str, spec: DatasetSpec, labelled: pd.DataFrame, *, interval: Interval
    ) -> pd.DataFrame:
        """None: :meth:`augment` already adds every labelled line of the model (the corrections included, the
        reverted ones left out), whatever the window; the ``predictions`` source adding them too would count
        each line twice."""
        import pandas as pd

        return pd.DataFrame(columns=[*spec.feature_names, spec.target or "category"])

    # --- model I/O ------------------------------------------------------------------------
    def log_model(self, model: CategoryModel, frame: pd.DataFrame, spec: DatasetSpec) -> str:
        example = frame[model.input_columns].head(5)
        return log_skops_model(model, example, ("mlflow", "scikit-learn", "scipy", "pandas", "numpy", "skops", "pyarrow"),
                               SKOPS_TRUSTED_TYPES, __file__)

    def load_model(self, model_uri: str) -> CategoryModel:
        from families.transaction_category.model import CategoryModel
        from features.model_io import load_model_as

        return load_model_as(model_uri, CategoryModel)


FAMILY = TransactionCategoryFamily()
