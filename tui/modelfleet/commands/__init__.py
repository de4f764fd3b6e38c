"""Command-line handlers, one module per command group.

Each module exposes ``register(subparsers)``. Modules import only the standard library at import time so that
``modelfleet --help`` stays fast; heavy imports (mlflow, ansible-runner, textual) happen inside handlers.
"""
