"""The ``skillgen`` subcommands, one module each, named after the subcommand it implements (``run.py`` is
``skillgen run``, ``report.py`` is ``skillgen report``). Each exposes ``HELP``, ``add_arguments`` and
``run(args) -> int``; :mod:`skillgen.cli` lists them. The work itself lives below: a command parses,
calls into the library (:mod:`skillgen.generation`, :mod:`skillgen.quality`, ...) and prints."""
