"""Training: a run's settings (``runconfig``: the ``[model]`` and ``[train]`` tables) and the trainer (``trainer``)."""
