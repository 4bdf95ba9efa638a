"""Imported by the fork server of ``tests/forkrun.py`` only: the backend as the CLI imports it (its
start-up noise dropped), and the package, once for every command a test runs."""

from generator.quiet import import_backend

import_backend("tensorflow")

import generator.cli.main  # noqa: E402,F401
