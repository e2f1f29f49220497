"""What a caller may name a file that lands in a job's working directory (an upload).

Filenames are hostile input: the name is used as one path component inside the workspace and
nothing else, so anything that could make it more (a separator, `..`), hide it from the agent
or a reader (a leading dot, control or format characters such as a right-to-left override),
read as an option (`-rf`), or clash with the workspace's own layout (`out`, where artifacts
go) is refused, with the reason, rather than silently rewritten.
"""

from __future__ import annotations

import unicodedata

MAX_FILENAME_CHARS = 200
#: Linux's NAME_MAX.
MAX_FILENAME_BYTES = 255
#: Names the workspace reserves: the agent's artifacts go under out/.
RESERVED_NAMES = frozenset({"out"})
#: Unicode categories refused anywhere in a name: control, format (bidi overrides, zero-width),
#: surrogates, private use, unassigned, line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


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
    for char in name:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
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
