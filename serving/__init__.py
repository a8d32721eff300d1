"""Hosted inference from compressed models: a separate ASGI app (see serving.app)."""
