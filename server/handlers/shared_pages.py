"""Rendering the pages that every anonymous visitor shares, with no request in reach.

The cache refreshes a stale page in the background (server.cache), after the request that
started the refresh has finished; by then Tornado has torn that handler's template namespace
down (`RequestHandler.finish` drops its `ui`), so such a render must not go through the
handler. It needs nothing of a request either: a shared page has no user, no XSRF token and
no locale, so a render from here also cannot leak one into what a CDN keeps.
"""
from __future__ import annotations

import functools
from typing import Any

import tornado.template
import tornado.web


class SharedPages:
    def __init__(self, app_settings: dict[str, Any]) -> None:
        # The same template options as RequestHandler.create_template_loader takes from them.
        options = {}
        if "autoescape" in app_settings:
            options["autoescape"] = app_settings["autoescape"]
        if "template_whitespace" in app_settings:
            options["whitespace"] = app_settings["template_whitespace"]
        self.loader = tornado.template.Loader(app_settings["template_path"], **options)
        files = app_settings.get("static_handler_class", tornado.web.StaticFileHandler)
        # What the templates may use beyond their arguments: `handler` is None, so a template
        # that asks for the visitor (base.html's `getattr(handler, "user", None)`) sees nobody.
        self.namespace = {"handler": None,
                          "static_url": functools.partial(files.make_static_url, app_settings)}

    def render(self, template_name: str, **kwargs: Any) -> bytes:
        return self.loader.load(template_name).generate(**self.namespace, **kwargs)
