"""Serving: the prediction API for the registry's @champion models.

``serving.app.create_app(settings)`` builds the FastAPI app; its lifespan loads each model's
champion, starts the prediction-log writer and the champion watcher (hot swap).
``ledgerline serve`` runs it under uvicorn. Nothing here runs at import time.
"""
