"""``python -m xorest`` is the ``xorest`` command."""
from .cli import main

main()
