"""Data sources, the synthetic generator, dataset specs and feature transformers.

Imports nothing of Ledgerline's but settings; training and serving both use the
transformers defined here, so the features a model sees are computed by one code path.
"""
