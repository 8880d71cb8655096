"""Ledgerline's cross-cutting core: settings, app database, registry helpers and the CLI."""

__version__ = "0.1.0"
