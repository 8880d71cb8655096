"""Per-family train/evaluate pairs, the MLflow logging wrapper and the promotion gate."""
