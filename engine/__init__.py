"""The engine room: where the long jobs (region maps, gallery builds, world builds) run when one machine is not
enough. ``engine.config`` holds the typed settings and the CLI flags every stage shares (``--engine local|ray``,
``--address``, ``--ray-workers``); ``engine.ray_run`` runs a list of retryable tasks on a Ray cluster (a local one
that starts by itself, or one joined by address), with one progress bar, workers that hold their model once, and
a task lost with a killed worker run again elsewhere.

The room knows nothing of models or worlds: a stage hands it a picklable factory (built once per worker) and the
tasks. It stands on ``contracts`` alone and must not import any other room of the project; Ray is imported only
when the Ray engine is asked for, so the local engine (the default) never needs it.
"""
