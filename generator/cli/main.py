"""The ``atlas`` command: ``layers``, ``generate``, ``examples``, ``trust``, ``wiring``, ``sample-images``,
``site``, ``bench``, ``merge``, ``slurm``.

Every problem with the input ends in one line on stderr and a non-zero exit, never a traceback; the
arguments are checked before TensorFlow or JAX is imported, so a bad one is refused at once. A file
system that says no (a full disk, a read-only folder) is one line too, naming the file and the reason:
files are written whole or not at all, so the same command resumes once it is fixed.
"""

from __future__ import annotations

import errno
import os
import sys

from generator.cli.commands import (
    EXIT_INTERRUPTED,
    cmd_bench,
    cmd_examples,
    cmd_generate,
    cmd_layers,
    cmd_merge,
    cmd_sample_images,
    cmd_site,
    cmd_trust,
    cmd_wiring,
)
from generator.cli.parser import EXIT_ERROR, build_parser
from generator.cli.resubmit import cmd_slurm
from generator.errors import AtlasError

COMMANDS = {"layers": cmd_layers, "generate": cmd_generate, "examples": cmd_examples, "trust": cmd_trust,
            "wiring": cmd_wiring, "sample-images": cmd_sample_images, "site": cmd_site, "bench": cmd_bench,
            "merge": cmd_merge, "slurm": cmd_slurm}


def os_error_line(exc: OSError) -> str:
    """A file system's refusal as one line: the file, the reason, what to do."""
    where = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes)) else "a file"
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space and rerun the same command: finished files are kept and it resumes"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "make it writable or choose another --out, then rerun the same command"
    else:
        hint = "rerun the same command once that is fixed: finished files are kept"
    return f"{where}: {reason}; {hint}"


def main(argv: list[str] | None = None) -> int:
    from generator import quiet

    quiet.environment()
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except AtlasError as exc:
        print(f"atlas {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"atlas {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("atlas: stopped; finished files are saved, rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
