"""The checks a trick class must pass to be loaded: its name, the resources it owns, a search space it can be
built from, and a warning for methods named almost like a hook."""

from __future__ import annotations

import difflib
import re

from automl.trick import HOOKS, RESOURCES, Trick
from automl.trick_space import RESERVED_PREFIXES, SpaceError, check_space

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
"""The form of a trick's, a model's, a data set's and a resource's name."""
NEAR_HOOK = 0.85
"""How alike (difflib's ratio) a method's name and a hook's must be for the method to be warned about:
``on_step_ends`` (0.96) and ``transform_batches`` (0.94) are, ``predict_all`` (0.78) is not."""


class InvalidTrick(ValueError):
    """A trick class the host refuses, and the name it would have had (to block that name with the reason)."""

    def __init__(self, trick: str, message: str) -> None:
        super().__init__(message)
        self.trick = trick


def validate_trick(cls: object) -> None:
    """Raise ValueError naming what is wrong with a trick class, from its name to its search space.

    The space is sampled (:func:`automl.space.check_space`), so that an ``__init__`` refusing a value its own
    space suggests is refused here, at load, and not in the middle of a study.
    """
    if not (isinstance(cls, type) and issubclass(cls, Trick)):
        raise ValueError(f"automl_register_tricks returned {cls!r}, not a subclass of automl.Trick")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME.match(name) or name in RESERVED_PREFIXES:
        raise ValueError(f"{cls.__name__}.name = {name!r} must match [a-z][a-z0-9_]* and not be one of {sorted(RESERVED_PREFIXES)}")
    try:
        _check_owns(cls)
    except ValueError as exc:
        raise InvalidTrick(name, str(exc)) from exc
    try:
        check_space(cls)
    except SpaceError as exc:
        raise InvalidTrick(name, str(exc)) from exc
    except Exception as exc:
        raise InvalidTrick(name, f"{cls.__name__} cannot be built from its own search space: "
                                 f"{type(exc).__name__}: {exc}") from exc


def _check_owns(cls: type[Trick]) -> None:
    """``owns`` names resources of ``RESOURCES`` or of the trick's own ``declares``; a near miss is named."""
    for attr in ("owns", "declares"):
        value = getattr(cls, attr)
        if not isinstance(value, tuple) or not all(isinstance(r, str) and NAME.match(r) for r in value):
            raise ValueError(f"{cls.__name__}.{attr} = {value!r} must be a tuple of resource names ([a-z][a-z0-9_]*)")
    known = [*RESOURCES, *cls.declares]
    for resource in cls.owns:
        if resource not in known:
            near = difflib.get_close_matches(resource, known, n=3, cutoff=0.6)
            hint = f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""
            raise ValueError(f"{cls.__name__}.owns names {resource!r}, which is not a resource{hint}; resources: "
                             f"{', '.join(RESOURCES)}; a trick adding its own says so: declares = ({resource!r},)")


def near_hooks(cls: type[Trick]) -> list[str]:
    """A warning for each public method of ``cls`` named almost like a hook (``on_step_ends``): never called."""
    found = []
    for attr in sorted(set(dir(cls)) - set(dir(Trick))):
        if attr.startswith("_") or not callable(getattr(cls, attr)):
            continue
        near = difflib.get_close_matches(attr, HOOKS, n=1, cutoff=NEAR_HOOK)
        if near:
            found.append(f"trick {cls.name!r}: {cls.__name__}.{attr} is not a hook, so the trainer never calls it; "
                         f"did you mean {near[0]}?")
    return found
