"""The top floor: the ``atlas`` command (``generator.cli.main:main``). ``parser`` reads the arguments,
``prepare`` checks them before a backend starts and reads the network once (a ``Network`` object handed
down), ``commands`` runs each command, ``resubmit`` hands one to Slurm as a job array. Nothing imports
this floor.
"""

from generator.cli.parser import build_parser

__all__ = ["build_parser"]
