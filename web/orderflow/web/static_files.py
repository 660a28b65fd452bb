"""``GET /static/<path>``: the browser UI's files, from a fixed list made at start-up.

Sanic's directory handler resolves the requested path on the file system,
and what it did not foresee became a 500 with a traceback: a directory
(``/static/``, ``/static/js/``: IsADirectoryError), an embedded null byte
(``/static/app.js%00.txt``: ValueError). Here the files under ``static/`` are
listed once, when the app is built, and a request is a lookup in that list: a
path that is not exactly one of those files (a directory, ``.``, ``..``, an
encoded traversal, a null byte, a dot-file) is a plain 404 problem, and no
request path ever reaches ``open()``. The files ship with the package and do
not change while it runs.

Caching: ``Last-Modified`` and ``Cache-Control: no-cache`` (no build step puts
a content hash in the names, so browsers revalidate), and ``If-Modified-Since``
is answered with 304. The date comparison is done here rather than by Sanic's
``validate_file``, which raises on a date without a zone (``-0000``).
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote

from sanic import HTTPResponse, Request
from sanic.exceptions import NotFound
from sanic.response import file

NOT_FOUND_DETAIL = "No static file exists at this path."


@dataclass(frozen=True)
class StaticFile:
    path: Path
    content_type: str
    modified: float


def _content_type(path: Path) -> str:
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if guessed.startswith("text/") or guessed == "application/javascript":
        guessed += "; charset=utf-8"
    return guessed


def list_files(directory: Path) -> dict[str, StaticFile]:
    """Every regular file under ``directory`` by its relative POSIX path; dot-files left out."""
    files: dict[str, StaticFile] = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        files[relative.as_posix()] = StaticFile(path, _content_type(path), path.stat().st_mtime)
    return files


def not_modified_since(header: str | None, modified: float) -> bool:
    """True when ``If-Modified-Since`` (``header``) is not before ``modified``; bad dates: False."""
    if not header:
        return False
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return int(modified) <= since.timestamp()


class StaticFiles:
    """The request handler over one directory's file list."""

    def __init__(self, directory: Path) -> None:
        self.files = list_files(directory)

    async def __call__(self, request: Request, path: str) -> HTTPResponse:
        found = self.files.get(unquote(path))
        if found is None:
            raise NotFound(NOT_FOUND_DETAIL)
        headers = {  # lowercase: file() fills in these two only when they are missing
            "last-modified": formatdate(found.modified, usegmt=True),
            "cache-control": "no-cache",
        }
        if not_modified_since(request.headers.get("if-modified-since"), found.modified):
            return HTTPResponse(status=304, headers=headers)
        if request.method == "HEAD":
            headers["content-length"] = str(found.path.stat().st_size)
            return HTTPResponse(headers=headers, content_type=found.content_type)
        return await file(
            found.path, mime_type=found.content_type, headers=headers, last_modified=None
        )
