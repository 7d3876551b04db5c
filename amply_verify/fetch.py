"""HTTP for the verifier: JSON and downloads from a portal, with errors people can read."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

TIMEOUT = 60
USER_AGENT = "amply-verify/1"
CHUNK = 256 * 1024


class FetchError(Exception):
    """The portal could not be reached, or answered with an error."""


def _request(url: str, accept: str) -> Any:
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"{url}: only http:// and https:// addresses can be fetched")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, headers={"Accept": accept, "User-Agent": USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310 - scheme checked
    except urllib.error.HTTPError as exc:
        message = ""
        try:
            body = json.loads(exc.read() or b"{}")
            message = body.get("error", {}).get("message", "")
        except (ValueError, AttributeError):
            pass
        raise FetchError(f"{url}: {exc.code} {exc.reason}" + (f": {message}" if message else "")
                         ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"cannot reach {url}: {reason}") from exc


def get_json(url: str) -> Any:
    with _request(url, "application/json") as response:
        try:
            return json.loads(response.read())
        except ValueError as exc:
            raise FetchError(f"{url}: the answer is not JSON") from exc


def get_text(url: str) -> str:
    with _request(url, "text/plain") as response:
        return str(response.read().decode("utf-8"))


def download(url: str, target: Path, progress: Callable[[int], None] | None = None) -> int:
    """Stream ``url`` into ``target`` (written beside it, then renamed); return its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    size = 0
    try:
        with os.fdopen(handle, "wb") as out, _request(url, "application/json") as response:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                size += len(chunk)
                if progress is not None:
                    progress(len(chunk))
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return size


def join(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")
