"""The engine: batching, the model thread, the state cache, inference and sampling.

It knows nothing of HTTP or of the global settings: the application
(``service.service``) hands it its configuration, and the edge
(``service.http``) turns request models into the engine's types
(``service.engine.types``). ``make lint`` checks this with import-linter.
"""
