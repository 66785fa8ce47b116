"""A post sent as a form: multipart/form-data (``image`` a file) or urlencoded (text fields only)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mner.channels.spec import text_fields
from mner.serving.http.schema import FIELDS, FLAGS, RequestError
from mner.serving.pipeline import PostInput


@dataclass
class FormPart:
    """One field of a form: its name, its file name (None for a text field) and its bytes."""

    name: str
    filename: str | None
    data: bytearray = field(default_factory=bytearray)


MAX_FORM_PARTS = 2 * len(FIELDS + FLAGS)  # more is not a post's form
TRUE, FALSE = ("true", "1", "on", "yes"), ("false", "0", "off", "no", "")  # a flag's form values


def form_parts(body: bytes, content_type: str) -> list[FormPart]:
    """The fields of a multipart/form-data body (each part, as bytes) or of a urlencoded one.

    Raises:
        RequestError: 400, a malformed body or one with more than ``MAX_FORM_PARTS`` parts.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    media_type, options = parse_options_header(content_type)
    if media_type == b"application/x-www-form-urlencoded":
        return _urlencoded_parts(body)
    boundary = options.get(b"boundary")
    if not boundary:
        raise RequestError(400, "malformed multipart body: Missing boundary in multipart.")
    collector = _PartCollector()
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        parser.write(body)
        parser.finalize()
    except RequestError:
        raise
    except Exception as err:  # noqa: BLE001 - python-multipart's refusals of a malformed body
        raise RequestError(400, f"malformed multipart body: {err}") from None
    return collector.parts


class _PartCollector:
    """python-multipart's callbacks: each part's name and file name (from its Content-Disposition) and bytes."""

    def __init__(self):
        self.parts: list[FormPart] = []
        self.name = self.value = self.disposition = b""  # the header being read; the part's disposition

    def callbacks(self) -> dict:
        return {
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
        }

    def on_header_field(self, data, start, end):
        self.name += data[start:end]

    def on_header_value(self, data, start, end):
        self.value += data[start:end]

    def on_header_end(self):
        if self.name.lower() == b"content-disposition":
            self.disposition = self.value
        self.name = self.value = b""

    def on_headers_finished(self):
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self.disposition)
        self.disposition = b""
        if b"name" not in params:
            raise RequestError(
                400, 'malformed multipart body: a part without a "name" in its Content-Disposition'
            )
        if len(self.parts) >= MAX_FORM_PARTS:
            raise RequestError(400, f"malformed multipart body: more than {MAX_FORM_PARTS} parts")
        filename = params.get(b"filename")
        self.parts.append(
            FormPart(
                params[b"name"].decode("utf-8", "replace"),
                None if filename is None else filename.decode("utf-8", "replace"),
            )
        )

    def on_part_data(self, data, start, end):
        self.parts[-1].data += data[start:end]


def _urlencoded_parts(body: bytes) -> list[FormPart]:
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_PARTS,
        )
    except UnicodeDecodeError as err:
        raise RequestError(
            400, f"malformed form: not UTF-8 (byte 0x{err.object[err.start]:02x}): expected UTF-8 text"
        ) from None
    except ValueError as err:
        raise RequestError(400, f"malformed form: {err}") from None
    return [FormPart(name, None, bytearray(value.encode("utf-8"))) for name, value in pairs]


def _form_text(part: FormPart) -> str:
    """A text field's value, which must be UTF-8 (as a JSON body must)."""
    try:
        return part.data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(
            400,
            f"form field {part.name!r} is not UTF-8 (byte 0x{part.data[err.start]:02x} at offset {err.start}): "
            "expected UTF-8 text",
        ) from None


def post_from_form(body: bytes, content_type: str) -> PostInput:
    """The post in a multipart/form-data body (``text``, the channels' text fields, an ``image`` file) or a
    urlencoded one (no image). Text fields must be UTF-8, as a JSON body must (never read as Latin-1)."""
    parts = form_parts(body, content_type)
    unknown = sorted({p.name for p in parts} - set(FIELDS + FLAGS))
    if unknown:
        raise RequestError(
            422,
            f"unknown form field(s) {', '.join(map(repr, unknown))}: expected "
            f"'text', an 'image' file, {', '.join(map(repr, text_fields() + FLAGS))}",
        )
    given = {}
    for part in parts:
        if part.name in given:
            times = sum(p.name == part.name for p in parts)
            raise RequestError(422, f"form field {part.name!r} is given {times} times; expected it once")
        given[part.name] = part
    for name in ("text", *text_fields(), *FLAGS):
        if name in given and given[name].filename is not None:
            raise RequestError(422, f"form field {name!r} is a file: expected a text field")
    image = given.get("image")
    if image is not None and image.filename is None and image.data:
        raise RequestError(
            422, "form field 'image' is text: expected a file part (Content-Disposition with a filename)"
        )
    if "text" not in given:
        raise RequestError(422, "missing form field 'text': expected the post's words")
    texts = {name: _form_text(given[name]) if name in given else None for name in text_fields()}
    # a form whose file input was left empty sends a part with no filename and no bytes: no image
    no_image = image is None or (not image.data and not image.filename)
    return PostInput(
        _form_text(given["text"]),
        None if no_image else bytes(image.data),
        attributes="attributes" in given and _form_flag(given["attributes"]),
        **{name: value or None for name, value in texts.items()},
    )


def _form_flag(part: FormPart) -> bool:
    """A flag's value: true, 1, on (a checked checkbox) or yes; false, 0, off, no or empty."""
    value = _form_text(part).strip().lower()
    if value not in TRUE + FALSE:
        raise RequestError(
            422, f"form field {part.name!r} is {value[:20]!r}: expected true or false (1 or 0, on or off)"
        )
    return value in TRUE
