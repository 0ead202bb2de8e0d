"""The ``stainfree`` command: a thin layer that parses arguments, calls a workflow and reports.

Every error in the user's input becomes one line on stderr and exit status 1; an interrupt
leaves no half-written output and exits 130. Each module registers one group of commands on
:data:`stainfree.cli.app.app`.
"""

# Importing a module registers its commands; this order is the order of `stainfree --help`.
# isort: off
from . import data, fields, classify, explore  # noqa: F401
from .app import app, main

# isort: on

__all__ = ["app", "main"]
