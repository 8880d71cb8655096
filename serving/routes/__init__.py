"""The API's route modules; :func:`serving.app.create_app` mounts them."""
