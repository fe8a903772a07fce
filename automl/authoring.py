"""`automl new-trick`: write a working trick plugin, its test, and the entry point that installs it."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from jinja2 import Environment, PackageLoader, StrictUndefined

from automl.errors import UserError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise UserError(f"trick name {name!r} must be a snake_case Python identifier, such as 'input_noise'")
    if name in set(installed):
        raise UserError(f"a trick named {name!r} is already installed (automl plugins show {name}); "
                        "choose another name")
    folder = Path(directory)
    created = NewTrick(name, folder / f"{name}.py", folder / f"test_{name}.py")
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
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():
        path.write_text(text)
    return created


__all__ = ["NewTrick", "new_trick"]
