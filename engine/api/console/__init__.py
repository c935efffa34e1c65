"""The web console (issue 17, docs/CONSOLE.md): pages for operators under /ui/, beside the API."""

from engine.api.console.routes import make_console_app

__all__ = ["make_console_app"]
