"""Tagging raw posts: the ``pipeline`` (checks, images, channels, the model), its ``result``, file jobs
(``jobs``, ``raytag``) and the HTTP ``service``."""
