"""The transaction-anomaly family: everything of it in this folder (see families/README.md)."""
