"""What a caller may name a file that lands in a job's working directory (an upload).

Filenames are hostile input: the name is used as one path component inside the workspace and
nothing else, so anything that could make it more (a separator, `..`), hide it from the agent
or a reader (a leading dot, control or format characters such as a right-to-left override),
read as an option (`-rf`), or clash with the workspace's own layout (`out`, where artifacts
go) is refused, with the reason, rather than silently rewritten.
"""

from __future__ import annotations

import re

MAX_FILENAME_CHARS = 200
#: Linux's NAME_MAX.
MAX_FILENAME_BYTES = 255
#: Names the workspace reserves: the agent's artifacts go under out/.
RESERVED_NAMES = frozenset({"out"})
#: Code points refused anywhere in a name: the Unicode categories Cc (control), Cf (format:
#: soft hyphen, zero-width, bidi overrides, tags), Co (private use), Zl and Zp (line and
#: paragraph separators), as of Unicode 14 (tests/unit/test_filenames.py recomputes them).
#: Surrogates (Cs) cannot reach a check: the API refuses a body with a lone one, and a pair is
#: one character. Spelled as ranges, not looked up, so that the check and the OpenAPI
#: document's pattern are the same thing.
_REFUSED_RANGES = (
    (0x0000, 0x001F), (0x007F, 0x009F), (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C),
    (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E),
    (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xE000, 0xF8FF),
    (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F), (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD),
)  # fmt: skip


def _class_item(code: int) -> str:
    # `\uXXXX` reads the same in Python's `re` and in ECMA-262 (JSON Schema's dialect); above
    # the BMP neither shares an escape, but both read the character itself as one code point.
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


#: The refused code points as a regular-expression class body.
REFUSED_CHARACTERS = "".join(
    _class_item(a) if a == b else f"{_class_item(a)}-{_class_item(b)}" for a, b in _REFUSED_RANGES
)
_REFUSED = re.compile(f"[{REFUSED_CHARACTERS}]")
#: The rules below as one JSON Schema pattern (valid in Python's `re` and ECMA-262 alike),
#: except the UTF-8 byte count, which no pattern can state.
_FIRST = f"[^/\\\\.\\-\\s{REFUSED_CHARACTERS}]"
_LAST = f"[^/\\\\.\\s{REFUSED_CHARACTERS}]"
_ANY = f"[^/\\\\{REFUSED_CHARACTERS}]"
FILENAME_PATTERN = (
    "^(?!out$)(?:"
    f"{_FIRST}|{_FIRST}{_ANY}{{0,{MAX_FILENAME_CHARS - 2}}}{_LAST}"
    ")$(?!\n)"  # Python's `$` also matches before a final newline
)


def filename_problem(name: str) -> str | None:
    """Why `name` may not name a file in a job's working directory, or None when it may."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_FILENAME_CHARS:
        return f"must be at most {MAX_FILENAME_CHARS} characters"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    if len(encoded) > MAX_FILENAME_BYTES:
        return f"must be at most {MAX_FILENAME_BYTES} bytes as UTF-8"
    if "/" in name or "\\" in name:
        return "must be a plain file name, without '/' or '\\'"
    if name in (".", ".."):
        return "must not be '.' or '..'"
    refused = _REFUSED.search(name)
    if refused:
        char = refused.group()
        return f"must not contain control or format characters (U+{ord(char):04X})"
    if name[0] == ".":
        return "must not start with '.' (hidden files are not placed)"
    if name[0] == "-":
        return "must not start with '-'"
    if name != name.strip() or name.endswith("."):
        return "must not start or end with whitespace, nor end with '.'"
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved (the agent's artifacts go under out/)"
    return None
