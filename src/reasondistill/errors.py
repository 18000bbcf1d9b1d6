"""One exception type for user mistakes.

The CLI turns a :class:`UserError` into a single line on stderr and exit code 2, so a bad path or a
malformed record never shows a traceback. Library code raises it wherever the cause is the input,
not a bug, and names the file, line and field when it knows them.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (paths, records, options), reported without a traceback."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = []
        if path is not None:
            where.append(str(path) + (f":{line}" if line is not None else ""))
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__((": ".join([", ".join(where), message])) if where else message)
        self.path, self.line, self.field = path, line, field
