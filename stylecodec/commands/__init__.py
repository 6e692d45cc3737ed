"""Sub-commands of the ``stylecodec`` CLI: each module has ``add_arguments`` and ``run``."""
