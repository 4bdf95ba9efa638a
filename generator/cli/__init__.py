"""The top floor: the ``atlas`` command. Parsing, preparing a job (the model read once, then passed down
as an object) and the commands. Nothing imports it.
"""

from generator.cli.main import main

__all__ = ["main"]
