"""WSGI entry point for gunicorn, mod_wsgi, waitress and other servers: ``wsgi:application``."""
import logging

from xorest import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
application = create_app()
