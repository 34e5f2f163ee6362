"""WSGI entry point for gunicorn, mod_wsgi, waitress and other servers: ``wsgi:application``."""
import logging

from xorest import config, create_app

settings = config.load()
logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
application = create_app(settings)
