"""Model families, one folder each; the platform reaches them only through ``ledgerline.families``."""
