"""`automl new-trick`: write a working trick plugin, its test, and the entry point that installs it."""

from __future__ import annotations

import importlib.util
import keyword
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from jinja2 import Environment, PackageLoader, StrictUndefined

from automl.errors import UserError
from automl.files import write_beside
from automl.trick_checks import NAME  # the host's own rule: a name it would refuse is no use
from automl.trick_space import RESERVED_PREFIXES


@dataclass(frozen=True)
class NewTrick:
    name: str
    module: Path
    test: Path

    @property
    def entry_point(self) -> str:
        """The lines a package's pyproject.toml needs for automl to find the trick once installed."""
        return f'[project.entry-points.automl]\n{self.name} = "your_package.{self.name}"'

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "module": str(self.module), "test": str(self.test),
                "entry_point": self.entry_point}


def new_trick(name: str, directory: str | Path = ".", *, installed: Iterable[str] = (),
              force: bool = False) -> NewTrick:
    """Write ``DIRECTORY/NAME.py`` and ``DIRECTORY/test_NAME.py``; ``installed`` are the trick names taken."""
    if not NAME.match(name) or keyword.iskeyword(name):
        raise UserError(f"trick name {name!r} must be a snake_case Python identifier, such as 'input_noise'")
    if name in RESERVED_PREFIXES:
        raise UserError(f"trick name {name!r} is reserved: a study names its own parameters {name}.*; "
                        "choose another name")
    if name in set(installed):
        raise UserError(f"a trick named {name!r} is already installed (automl plugins show {name}); "
                        "choose another name")
    folder = Path(directory)
    created = NewTrick(name, folder / f"{name}.py", folder / f"test_{name}.py")
    shadowed = _module_elsewhere(name, created.module)
    if shadowed:
        raise UserError(f"trick name {name!r} is also the module {name} ({shadowed}), which {name}.py would "
                        "hide from the generated test and the trick; choose another name")
    existing = [str(p) for p in (created.module, created.test) if p.exists()]
    if existing and not force:
        raise UserError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                        "pass --force to overwrite, or --dir to write elsewhere")
    values = {"name": name, "class_name": "".join(part.title() for part in name.split("_")),
              "title": name.replace("_", " ").capitalize(), "module": name, "test_file": created.test.name}
    templates = Environment(loader=PackageLoader("automl", "templates"), undefined=StrictUndefined,
                            keep_trailing_newline=True)
    texts = {path: templates.get_template(template).render(values)
             for path, template in ((created.module, "trick.py.j2"), (created.test, "test_trick.py.j2"))}
    _write_all(folder, texts)
    return created


def _module_elsewhere(name: str, module: Path) -> str | None:
    """Where an importable module called ``name`` lives, other than ``module``; None if there is none.

    The generated test imports the trick by its module name, from the folder it is in, so
    ``torch.py`` or ``json.py`` there would stand in for the real ``torch`` or ``json``.
    """
    if name in sys.stdlib_module_names:
        return "standard library"
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec else None
    if origin in (None, "namespace", "built-in", "frozen") or Path(origin).resolve() == module.resolve():
        return None
    return origin


def _write_all(folder: Path, texts: dict[Path, str]) -> None:
    """Write every file or none: each goes to a temporary file beside it, then all are renamed."""
    temporary: dict[Path, Path] = {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, text in texts.items():
            temporary[path] = write_beside(path, text.encode("utf-8"))
        for path, tmp in temporary.items():
            os.replace(tmp, path)
    except OSError as exc:
        for tmp in temporary.values():
            tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write the trick into {str(folder)!r}: {exc.strerror or exc}; "
                        "choose a --dir you can write to") from None


__all__ = ["NewTrick", "new_trick"]
