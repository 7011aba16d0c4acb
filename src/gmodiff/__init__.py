"""gmodiff: multi-exposure HDR reconstruction with one-step gain-map refinement (GMODiff)."""

__version__ = "0.1.0"
