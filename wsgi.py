"""WSGI entry point for gunicorn, mod_wsgi, waitress and other servers: ``wsgi:application``."""
from xorest import config, create_app
from xorest.logs import configure

settings = config.load()
configure(settings.log_level)
application = create_app(settings)
