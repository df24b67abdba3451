"""Interactive Jupyter panels (``pk.widgets``): planned, see the project's issues."""

__all__: list[str] = []
