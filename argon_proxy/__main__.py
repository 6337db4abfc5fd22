"""``python -m argon_proxy`` runs the ``argon`` command line."""

from .cli import main

main()
