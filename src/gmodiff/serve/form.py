"""The upload body, read as it arrives straight into the job's own folder.

Starlette's form parser spools every file in the system temp folder first; this one writes each
frame's bytes under the server's work folder as they come (so ``--workdir`` and its disk budget
hold for uploads too), counts them against the upload limit, and refuses a body that is empty,
not a multipart form, or cut off before its closing boundary. Any refusal is a :class:`Refused`
with an HTTP status and the page's one-line ``error:`` message; the caller removes the folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import ClientDisconnect, Request

from gmodiff.errors import GmodiffError, SceneError

MAX_FIELDS = 20
MAX_FIELD_BYTES = 4096
"""The page sends a few short fields (method, compare, ev, align)."""


class Refused(Exception):
    """A request refused before anything is queued: its HTTP status and one-line message."""

    def __init__(self, error: GmodiffError | str, status: int = 400, headers: dict | None = None):
        self.status = status
        self.line = error if isinstance(error, str) else f"error: {error}"
        self.headers = headers or {}
        super().__init__(self.line)


def refuse(message: str, fix: str, status: int = 400) -> Refused:
    """A :class:`Refused` from a message and its fix, in the CLI's ``—`` shape."""
    return Refused(SceneError(message, None, fix), status)


@dataclass
class Form:
    """A parsed upload: (client file name, saved path) per file part, and the text fields."""

    files: list[tuple[str, Path]] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


class _Parser:
    """python-multipart callbacks that write file parts into ``folder`` as they arrive."""

    def __init__(self, folder: Path, max_files: int):
        self.folder, self.max_files = folder, max_files
        self.form, self.ended = Form(), False
        self._header, self._value, self._disposition = b"", b"", b""
        self._file = None
        self._field: str | None = None
        self._data = bytearray()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def on_part_begin(self) -> None:
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._header.strip().lower() == b"content-disposition":
            self._disposition = self._value
        self._header, self._value = b"", b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            if len(self.form.files) >= self.max_files:
                raise refuse(f"more than {self.max_files} frames, above this server's limit of "
                             f"{self.max_files}", "upload fewer frames", 413)
            path = self.folder / f"upload-{len(self.form.files)}.part"
            self._file = path.open("wb")
            client = options[b"filename"].decode("utf-8", "replace")
            self.form.files.append((client, path))
        else:
            if len(self.form.fields) >= MAX_FIELDS:
                raise refuse("too many form fields", "upload from the page")
            self._field, self._data = name, bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            # A local write of one network chunk (64 KiB) into the page cache: no need to leave
            # the event loop for it.
            self._file.write(data[start:end])
        else:
            if len(self._data) + end - start > MAX_FIELD_BYTES:
                raise refuse(f"form field {self._field!r} is longer than {MAX_FIELD_BYTES} "
                             "bytes", "upload from the page")
            self._data += data[start:end]

    def on_part_end(self) -> None:
        if self._file is not None:
            self.close()
        elif self._field is not None:
            self.form.fields[self._field] = self._data.decode("utf-8", "replace")
            self._field = None

    def on_end(self) -> None:
        self.ended = True


async def read_form(request: Request, folder: Path, max_bytes: int, max_files: int,
                    max_mb: float) -> Form:
    """Stream the multipart body of ``request`` into ``folder``; raises :class:`Refused`, or
    ``ClientDisconnect`` when the client went away mid-upload."""
    import python_multipart
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import parse_options_header

    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    length = request.headers.get("content-length")
    if length is None or not (length.isascii() and length.isdigit()):
        raise refuse("the upload has no Content-Length", "upload from the page", 411)
    if int(length) > max_bytes:
        raise refuse(f"the upload is {int(length) / 2**20:.1f} MB, above this server's "
                     f"{max_mb:g} MB limit",
                     "send smaller frames, or start the server with a larger --max-upload-mb", 413)
    if int(length) == 0:
        raise refuse("the upload is empty", "choose the bracket's 2 or more frames")
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        shown = content_type.decode("latin-1")[:60] or "none"
        raise refuse(f"the upload is not a multipart form of frames (Content-Type {shown})",
                     "send the frames as multipart/form-data under the name 'files', as the page "
                     "does", 415)
    parser = _Parser(folder, max_files)
    callbacks = {name: getattr(parser, name) for name in (
        "on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value",
        "on_header_end", "on_headers_finished", "on_end")}
    received = 0
    try:
        multipart = python_multipart.MultipartParser(params[b"boundary"], callbacks)
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:  # the server enforces Content-Length; never trust it alone
                raise refuse(f"the upload is above this server's {max_mb:g} MB limit",
                             "send smaller frames, or start the server with a larger "
                             "--max-upload-mb", 413)
            multipart.write(chunk)
        multipart.finalize()
    except FormParserError:
        raise refuse("the upload is not a valid multipart form", "upload from the page") from None
    finally:
        parser.close()
    if not parser.ended:
        raise refuse("the upload ended before its last part (cut off, or not a complete form)",
                     "upload the frames again")
    return parser.form


__all__ = ["ClientDisconnect", "Form", "Refused", "read_form", "refuse"]
