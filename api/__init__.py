"""The HTTP API: alerts, vehicles, segments, thresholds and dead letters over FastAPI.

Build it with :func:`api.app.create_app`.
"""
