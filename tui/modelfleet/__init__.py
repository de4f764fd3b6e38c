"""modelfleet: roll machine-learning models out to fleets of edge nodes."""

__version__ = "0.1.0"
