"""Running one App as a worker process: what ``orderflow worker MODULE:APP`` loads.

The command (:mod:`orderflow.runtime.commands.worker`) adds options, exit codes and
one-line errors; loading lives here so a program embedding the runtime can do the same.
"""

from __future__ import annotations

import importlib

from orderflow.runtime.app import App


class AppLoadError(LookupError):
    """``MODULE:APP`` names no App: the attribute is missing or is something else.
    (An error raised while the module itself is imported propagates as it is.)"""


def load_app(spec: str) -> App:
    """``"package.module:attribute"`` (attribute defaults to ``app``) -> App.

    A callable attribute that is not an App is called (an app factory)."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    try:
        app = getattr(module, attribute or "app")
    except AttributeError:
        missing = attribute or "app"
        raise AppLoadError(f"module {module_name} has no attribute {missing!r}") from None
    if callable(app) and not isinstance(app, App):
        app = app()
    if not isinstance(app, App):
        raise AppLoadError(f"{spec} is not an orderflow App (got {type(app).__name__})")
    return app
