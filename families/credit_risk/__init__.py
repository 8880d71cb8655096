"""The credit-risk family: everything of it in this folder (see families/README.md)."""
