"""The spending-forecast family: everything of it in this folder (see families/README.md)."""
