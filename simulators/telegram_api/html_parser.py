"""Telegram's HTML parse mode: markup in, plain text plus entities (UTF-16 offsets) out."""

from __future__ import annotations

import re
from typing import Any

_TAG_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_CHARREF = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ATTR = re.compile(r"""\s*([A-Za-z_-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?""")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _decode_refs(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        ref = m.group(1)
        if ref in _NAMED:
            return _NAMED[ref]
        number = int(ref[2:], 16) if ref[1] in "xX" else int(ref[1:])
        return chr(number) if 0 < number <= 0x10FFFF else m.group(0)

    return _CHARREF.sub(one, text)


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML: plain text and entities (UTF-16 offsets), or ValueError with its wording."""
    out: list[str] = []
    pos16 = 0
    stack: list[tuple[str, int, dict[str, str]]] = []
    entities: list[dict[str, Any]] = []
    i, n = 0, len(source)

    def emit(piece: str) -> None:
        nonlocal pos16
        out.append(piece)
        pos16 += utf16_len(piece)

    while i < n:
        if source[i] != "<":
            piece, i = _text_at(source, i)
            emit(piece)
            continue
        offset = len(source[:i].encode())
        if source.startswith("</", i):
            name, end = _end_tag(source, i, offset)
            if not stack:
                raise ValueError(f"Unexpected end tag at byte offset {offset}")
            tag, start, attrs = stack.pop()
            if name and name != tag:
                raise ValueError(
                    f'Unmatched end tag at byte offset {offset}, expected "</{tag}>", found "</{name}>"'
                )
            entity = _entity(tag, attrs, start, pos16 - start, stack)
            if entity:
                entities.append(entity)
            i = end + 1
            continue
        name, attrs, close = _start_tag(source, i, offset)
        stack.append((name, pos16, attrs))
        i = close + 1
    if stack:
        raise ValueError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _text_at(source: str, i: int) -> tuple[str, int]:
    """The text at ``source[i]`` (not "<") up to the next tag or reference, decoded; and where it ends."""
    if source[i] == "&":
        m = _CHARREF.match(source, i)
        return (_decode_refs(m.group(0)), m.end()) if m else ("&", i + 1)
    j = i
    while j < len(source) and source[j] not in "<&":
        j += 1
    return source[i:j], j


def _end_tag(source: str, i: int, offset: int) -> tuple[str, int]:
    """The name of the end tag at ``source[i]`` ("</"), and where its ">" is."""
    end = source.find(">", i)
    if end < 0:
        raise ValueError(f"Unclosed end tag at byte offset {offset}")
    return source[i + 2 : end].strip().lower(), end


def _start_tag(source: str, i: int, offset: int) -> tuple[str, dict[str, str], int]:
    """The tag opening at ``source[i]`` ("<"): its name, its attributes, and where its ">" is."""
    n = len(source)
    j = i + 1
    while j < n and not source[j].isspace() and source[j] not in ">/":
        j += 1
    name = source[i + 1 : j].lower()
    if name not in _TAG_ENTITY:
        raise ValueError(f'Unsupported start tag "{name}" at byte offset {offset}')
    attrs: dict[str, str] = {}
    while True:
        if j >= n:
            raise ValueError(f'Unclosed start tag "{name}" at byte offset {offset}')
        if source[j] == ">":
            break
        m = _ATTR.match(source, j)
        if not m or m.end() == j:
            if source[j] in " \t\r\n/":
                j += 1
                continue
            raise ValueError(f'Empty attribute name in the tag "{name}" at byte offset {offset}')
        value = next((g for g in m.groups()[1:] if g is not None), "")
        attrs[m.group(1).lower()] = _decode_refs(value)
        j = m.end()
    if name == "span" and attrs.get("class") != "tg-spoiler":
        raise ValueError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
    return name, attrs, j


def _entity(
    tag: str, attrs: dict[str, str], start: int, length: int, outer: list[tuple[str, int, dict[str, str]]]
) -> dict[str, Any] | None:
    if length <= 0:
        return None
    kind = _TAG_ENTITY[tag]
    entity: dict[str, Any] = {"type": kind, "offset": start, "length": length}
    if tag == "a":
        if not attrs.get("href"):
            return None
        entity["url"] = attrs["href"]
    elif tag == "code" and outer and outer[-1][0] == "pre":
        language = attrs.get("class", "")
        if language.startswith("language-"):
            outer[-1][2]["language"] = language.removeprefix("language-")
        return None
    elif tag == "pre" and attrs.get("language"):
        entity["language"] = attrs["language"]
    elif tag == "blockquote" and "expandable" in attrs:
        entity["type"] = "expandable_blockquote"
    elif tag == "tg-emoji":
        entity["custom_emoji_id"] = attrs.get("emoji-id", "")
    return entity
