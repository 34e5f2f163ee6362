"""The API's description: its OpenAPI document and a page to read it and try calls (Swagger UI).

The page and its assets come from a Python package (``flask-swagger-ui`` ships Swagger UI's
distribution), served from here: nothing is loaded from elsewhere, the page works offline.
"""
import json
import os

import flask_swagger_ui
from flask import Blueprint, Response, current_app, send_from_directory

from . import BASE_URL, openapi
from .output import json_response
from .routes import BINARY, Answer, Variable, operation

bp = Blueprint("docs", __name__)

#: Swagger UI's distribution, as the package ships it.
ASSETS_DIR = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")
#: The assets the page uses, and their media types.
ASSETS = {"swagger-ui.css": "text/css", "index.css": "text/css", "swagger-ui-bundle.js": "text/javascript",
          "favicon-32x32.png": "image/png", "favicon-16x16.png": "image/png"}
INIT_SCRIPT = "xorest-docs.js"

_DOCUMENT = Answer(200, "the OpenAPI 3.1 document of this API", {
    "type": "object", "required": ["openapi", "info", "paths"],
    "properties": {"openapi": {"type": "string", "enum": [openapi.OPENAPI_VERSION]},
                   "info": {"type": "object"}, "paths": {"type": "object"}, "components": {"type": "object"}}},
    ("ETag",))
_ASSET_NAMES = (*ASSETS, INIT_SCRIPT)


@operation(bp, "/openapi.json", permission="public", tags=("docs",), summary="This API's OpenAPI document",
           answers=(_DOCUMENT,))
def document():
    """The OpenAPI 3.1 document of every operation, generated from the routes' declarations."""
    return json_response(openapi.document(current_app))


@operation(bp, "/docs/swagger.json", permission="public", tags=("docs",),
           summary="This API's OpenAPI document (Xen Orchestra's path)", answers=(_DOCUMENT,))
def swagger_json():
    """The same document as ``/rest/v0/openapi.json``, where Xen Orchestra serves its own."""
    return json_response(openapi.document(current_app))


PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>xorest REST API</title>
  <link rel="stylesheet" href="{BASE_URL}/docs/assets/swagger-ui.css">
  <link rel="stylesheet" href="{BASE_URL}/docs/assets/index.css">
  <link rel="icon" type="image/png" href="{BASE_URL}/docs/assets/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="{BASE_URL}/docs/assets/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{BASE_URL}/docs/assets/swagger-ui-bundle.js"></script>
  <script src="{BASE_URL}/docs/assets/{INIT_SCRIPT}"></script>
</body>
</html>
"""

# Browsers do not let a page send a Cookie header (fetch drops it): a token given to a
# cookie scheme under Authorize becomes the page's own cookie of that name, on the path of
# the ones xorest sets, which the browser then sends; choosing another scheme drops it.
# The header stays in the request, so the curl line Swagger UI shows has it.
INIT = """window.onload = function () {
  var base = %(base)s;
  var names = ["authenticationToken", "token"];
  function setCookie(name, value) {
    document.cookie = name + "=" + (value === null ? "; Max-Age=0" : encodeURIComponent(value))
      + "; Path=" + base + "; SameSite=Strict";
  }
  window.ui = SwaggerUIBundle({
    url: %(url)s,
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayRequestDuration: true,
    showExtensions: true,
    docExpansion: "list",
    filter: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    requestInterceptor: function (request) {
      if (request.loadSpec) {
        return request;
      }
      var headers = request.headers || {};
      var cookie = headers.Cookie || headers.cookie || "";
      names.forEach(function (name) {
        var match = new RegExp("(?:^|;\\\\s*)" + name + "=([^;]*)").exec(cookie);
        setCookie(name, match ? decodeURIComponent(match[1]) : null);
      });
      return request;
    }
  });
};
""" % {"base": json.dumps(BASE_URL), "url": json.dumps(f"{BASE_URL}/openapi.json")}


@operation(bp, "/docs", permission="public", tags=("docs",), summary="This API's documentation page",
           answers=(Answer(200, "Swagger UI: every operation, and Authorize to try them", "text", (),
                           "text/html"),))
def page():
    """The documentation page (Swagger UI): read the operations, authorise with a token
    (cookie or Bearer) or a password, and try calls."""
    return Response(PAGE, mimetype="text/html")


@operation(bp, "/docs/assets/<any(%s):name>" % ", ".join(f"'{name}'" for name in _ASSET_NAMES),
           permission="public", tags=("docs",), summary="An asset of the documentation page",
           variables={"name": Variable("the asset", expand=True)},
           answers=(Answer(200, "the file", BINARY, ("Cache-Control",),
                           content_type=lambda name: ASSETS.get(name, "text/javascript")),))
def asset(name):
    """Swagger UI's files, from the Python package that ships them."""
    if name == INIT_SCRIPT:
        response = Response(INIT, mimetype="text/javascript")
    else:
        response = send_from_directory(ASSETS_DIR, name, mimetype=ASSETS[name], max_age=3600)
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
