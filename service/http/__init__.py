"""The HTTP edge: request models, validation, error shapes, middleware, the direct route and streaming.

It turns request models into the engine's types (``service.engine.types``)
and the engine's results into responses.
"""
