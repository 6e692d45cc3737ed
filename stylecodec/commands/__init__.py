"""Sub-commands of the ``stylecodec`` CLI: each module has ``add_arguments(parser)`` and ``run(args)``.

Owns: argument parsing and the printed output of each command; the work is the library's.

May import: anything in the package. Imports of the library sit inside ``run`` (and ``add_arguments``
needs only light modules), on purpose: ``stylecodec.cli`` builds only the parser of the command
it runs, so ``stylecodec --help``, ``inspect``, ``extract`` and every ``COMMAND --help`` start
without loading torch (CLI start-up time, measured in the README).
"""

