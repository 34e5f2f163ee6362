"""Services compose the middle layers (xapi, objects, cache, filter, store) for the API and CLI.

Rule of this package: no Flask here.  Services are plain classes given their collaborators
in ``__init__``; the blueprints and the CLI share them.
"""
