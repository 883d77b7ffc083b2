"""Data files read with importlib.resources (defaults, the model catalogue, schemas, configs of
Redis and Flower); nothing here imports our code."""

__all__: list[str] = []
