"""The TOML files automl reads (study files, run files): their text, their TOML, and one-line errors that name the
file, the section and the key, and list the valid choices."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, ValidationError

from automl.errors import UserError


class Section(BaseModel):
    """A table of a study or run file: unknown keys are errors, values are fixed once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


LISTED = 10
"""How many valid names an error lists before it gives the count of the rest."""


def listing(names: Iterable[str]) -> str:
    """Valid ``names`` for an error message, sorted; a long list is cut and says how many there are."""
    names = sorted(names)
    if len(names) > LISTED:
        return f"{', '.join(names[:LISTED])}, ... ({len(names)} in all)"
    return ", ".join(names) or "(none)"


def parse_toml(text: str, path: str | Path) -> dict[str, Any]:
    """The TOML ``text`` of the file at ``path``; malformed or too deeply nested text is a one-line UserError."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: malformed TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nesting
        raise UserError(f"{path}: malformed TOML: arrays or tables nested too deeply; "
                        "flatten the file") from None


def read_text(path: Path, kind: str, if_missing: str) -> str:
    """The text of a ``kind`` of file; a missing or unreadable one is a one-line UserError (``if_missing``: the fix)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{kind} {str(path)!r} not found; {if_missing}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {kind} {str(path)!r}: {exc}") from None


def first_problem(exc: ValidationError, root: type[BaseModel]) -> str:
    """The first error of a validation as one line: where (``[section] key:``), what, and the valid keys (those of
    the section of ``root``, the file's model, where a key is unknown)."""
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"] if not str(part).startswith(("function-", "union["))]
    kind = error["type"]
    where = _where(loc)
    if kind == "extra_forbidden":
        section, key = loc[:-1], loc[-1]
        return f"{_where(section)}unknown key {key!r}; valid: {', '.join(_valid_keys(section, root))}".strip()
    if kind == "missing":
        return f"{where}is required".strip()
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    shown = f" (got {got!r})" if isinstance(got, (str, int, float, bool)) and repr(got) not in message else ""
    return f"{where}{message}{shown}".strip()


def _where(loc: list[str]) -> str:
    if not loc:
        return ""
    if len(loc) == 1:
        return f"[{loc[0]}] "
    return f"[{loc[0]}] {'.'.join(loc[1:])}: "


def _valid_keys(section: list[str], root: type[BaseModel]) -> list[str]:
    model: Any = root
    for part in section:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            break
        model = field.annotation
    return list(model.model_fields)


__all__ = ["LISTED", "Section", "first_problem", "listing", "parse_toml", "read_text"]
