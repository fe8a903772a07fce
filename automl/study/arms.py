"""The design of a comparison: its arms (the fixed recipes a study file leaves open, or those ``[compare.arms]``
names), the reference they are tested against, the budgets they are compared at and the seeds of each.

An arm is found by walking the study's define-by-run space with a probe in place of an Optuna trial, in the order
a brute-force sampler meets the recipes; its cells are queued and trained by ``automl.study.cells``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from automl.budget import Budget
from automl.errors import UserError
from automl.seeds import MIN_SEEDS
from automl.sequential import FIRST_LOOK
from automl.overrides import contains, describe
from automl.space import select_tricks
from automl.study.runner import PreparedStudy
from automl.run import TrialContext
from automl.trick_errors import TrickError
from automl.trick_space import ENABLED, OWNER_PREFIX, SEARCH_PREFIX

PLAIN = "plain"
"""The name of the arm that enables no trick."""


@dataclass(frozen=True)
class Arm:
    """One fixed recipe: its name, the tricks it enables, and every parameter its trials suggest."""

    name: str
    tricks: tuple[str, ...]
    params: dict[str, Any]


class _Probe:
    """Stands in for an Optuna trial to walk a study's space: each categorical with several choices is one
    decision, taken as ``path`` says (its first choice past the path); a numeric range is refused."""

    number = 0

    def __init__(self, path: Sequence[int]) -> None:
        self.path = list(path)
        self.decisions: list[tuple[int, int]] = []
        """(index taken, number of choices) of each decision, in the order the trial asked."""
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        choices = list(choices)
        index = 0
        if len(choices) > 1:
            at = len(self.decisions)
            index = self.path[at] if at < len(self.path) else 0
            self.decisions.append((index, len(choices)))
        self.params[name] = choices[index]
        return choices[index]

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False,
                      step: float | None = None) -> float:
        return self._fixed(name, FloatDistribution(low, high, log=log, step=step))

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False, step: int = 1) -> int:
        return self._fixed(name, IntDistribution(low, high, log=log, step=step))

    def _fixed(self, name: str, dist: FloatDistribution | IntDistribution) -> Any:
        if dist.low != dist.high:
            raise UserError(f"{name} is left as a range {describe(dist)}: a comparison compares fixed recipes; "
                            f"pin it to one value ({self._where(name)}), or list the values to compare as choices")
        self.params[name] = dist.low
        return dist.low

    def set_user_attr(self, key: str, value: Any) -> None:
        pass  # the probe records nothing: a trick's unavailability is recorded by the cells' own trials

    def _where(self, name: str) -> str:
        group, _, key = name.partition(".")
        return f"[train] {key} = ..." if group == SEARCH_PREFIX else f"[tricks.{group}] {key} = ..."


class _RecipeProbe(_Probe):
    """Answers a trial's questions as an arm of ``[compare.arms]`` says: its tricks on, every other trick off
    (an owner choice goes to its trick, else ``"none"``), its pins; anything else left open is refused."""

    def __init__(self, name: str, tricks: Sequence[str], pins: dict[str, Any]) -> None:
        super().__init__([])
        self.name, self.tricks, self.pins = name, set(tricks), pins

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        choices = list(choices)
        if name in self.pins:
            value = self.pins[name]
        elif name.endswith(f".{ENABLED}"):
            value = name.removesuffix(f".{ENABLED}") in self.tricks
        elif name.startswith(f"{OWNER_PREFIX}."):
            value = next((c for c in choices if c in self.tricks), "none")
        elif len(choices) == 1:
            value = choices[0]
        else:
            raise UserError(f"[compare.arms.{self.name}] leaves {name} open among {choices}; pin it "
                            f"(pins = {{ \"{name}\" = ... }})")
        if not contains(CategoricalDistribution(choices), value):
            raise UserError(f"[compare.arms.{self.name}] {name} = {value!r} is not one of {choices}")
        self.params[name] = value
        return value

    def _fixed(self, name: str, dist: FloatDistribution | IntDistribution) -> Any:
        if name not in self.pins:
            return super()._fixed(name, dist)
        if not contains(dist, self.pins[name]):
            raise UserError(f"[compare.arms.{self.name}] pins {name} = {self.pins[name]!r} outside its range "
                            f"{describe(dist)}")
        self.params[name] = self.pins[name]
        return self.pins[name]

    def _where(self, name: str) -> str:
        return f"pins = {{ \"{name}\" = ... }} in [compare.arms.{self.name}]"


def study_arms(prepared: PreparedStudy) -> list[Arm]:
    """The arms ``[compare.arms]`` names, or else every fixed recipe the study file leaves open, in the order a
    brute-force sampler meets them: each trick on and off, each owner choice, each categorical choice."""
    if prepared.study_file.config.compare.arms:
        return [_named_arm(prepared, name) for name in prepared.study_file.config.compare.arms]
    found: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    path: list[int] | None = []
    while path is not None:
        probe = _Probe(path)
        found.append((_walk(prepared, probe), probe.params))
        path = _next_path(probe.decisions)
    return _named(found)


def _walk(prepared: PreparedStudy, probe: _Probe) -> tuple[str, ...]:
    """Ask ``probe`` what a trial of the study asks, in the order it asks; the tricks it enables."""
    data = prepared.data
    context = TrialContext(study_name=prepared.name, trial_number=0, best_checkpoint=lambda: None,
                           model=prepared.study_file.config.task.probe_model(data.input_shape[0], data.num_classes))
    try:
        tricks = select_tricks(probe, prepared.tricks, prepared.settings, context)
    except (TrickError, ValueError) as exc:
        raise UserError(f"a recipe of the study cannot be built: {exc}") from None
    prepared.study_file.config.train.resolve(probe)
    return tuple(t.name for t in tricks)


def _named_arm(prepared: PreparedStudy, name: str) -> Arm:
    """The arm ``[compare.arms.NAME]`` describes, checked: it enables exactly its tricks, and each pin is used."""
    table = prepared.study_file.config.compare.arms[name]
    where = f"{prepared.study_file.path}: [compare.arms.{name}]"
    unknown = [t for t in table.tricks if t not in prepared.tricks]
    if unknown:
        raise UserError(f"{where} tricks: {unknown[0]!r} is not among the study's tricks "
                        f"({', '.join(sorted(prepared.tricks)) or 'none'}); add it to [tricks] include")
    probe = _RecipeProbe(name, table.tricks, dict(table.pins))
    try:
        tricks = _walk(prepared, probe)
    except UserError as exc:
        raise UserError(f"{prepared.study_file.path}: {exc}") from None
    if set(tricks) != set(table.tricks):
        off = sorted(set(table.tricks) - set(tricks))
        raise UserError(f"{where} tricks: {', '.join(off)} cannot be on together with the others (they own "
                        "one resource, or the study pins them off)")
    unused = sorted(set(table.pins) - set(probe.params))
    if unused:
        raise UserError(f"{where} pins {unused[0]!r}, which its recipe never asks for; its parameters: "
                        f"{', '.join(probe.params) or 'none'}")
    return Arm(name, tricks, probe.params)


def _next_path(decisions: list[tuple[int, int]]) -> list[int] | None:
    """The next branch of the define-by-run tree after the one ``decisions`` took (an odometer), or None."""
    for at in reversed(range(len(decisions))):
        index, choices = decisions[at]
        if index + 1 < choices:
            return [d[0] for d in decisions[:at]] + [index + 1]
    return None


def _named(found: list[tuple[tuple[str, ...], dict[str, Any]]]) -> list[Arm]:
    """Arms named by their tricks (``PLAIN`` for none); recipes with the same tricks are told apart by the
    parameters that differ between them."""
    base = ["+".join(sorted(tricks)) or PLAIN for tricks, _ in found]
    arms = []
    for name, (tricks, params) in zip(base, found):
        if base.count(name) > 1:
            same = [p for n, (_, p) in zip(base, found) if n == name]
            varied = [k for k in params if not _is_choice_of_tricks(k) and any(p.get(k) != params[k] for p in same)]
            name += "(" + ", ".join(f"{k}={params[k]}" for k in varied) + ")"
        arms.append(Arm(name, tricks, params))
    return arms


def _is_choice_of_tricks(param: str) -> bool:
    return param.startswith(f"{OWNER_PREFIX}.") or param.endswith(f".{ENABLED}")


def pick_reference(arms: Sequence[Arm], reference: str | None, given_by: str = "--reference") -> Arm:
    """The arm named ``reference`` (``--reference``, else ``[compare] reference``); by default the arm with the
    fewest tricks (the plain one where there is one), the first of a tie."""
    if reference is None:
        return min(arms, key=lambda arm: len(arm.tricks))
    for arm in arms:
        if arm.name == reference:
            return arm
    raise UserError(f"{given_by} {reference!r} is not an arm of this comparison; arms: "
                    f"{', '.join(a.name for a in arms)}")


def parse_budgets(text: str | None, default: Budget) -> list[Budget]:
    """``--budgets 10s,20s,40s`` in the order given (the order crossings are read in); the study's by default."""
    if not text:
        return [default]
    budgets = []
    for part in text.split(","):
        try:
            budget = Budget.parse(part.strip())
        except UserError as exc:
            raise UserError(f"--budgets: {exc}") from None
        if budget in budgets:
            raise UserError(f"--budgets names {budget} twice; give each budget once")
        budgets.append(budget)
    return budgets


def check_seeds(args: Any, section: Any) -> tuple[int, float | None]:
    """(seeds, tolerance) of a comparison from ``--seeds`` / ``--max-seeds`` / ``--tolerance`` over the study
    file's ``[compare]``: the fixed design's seeds and None, or the sequential design's maximum and tolerance."""
    if args.seeds is not None and (args.max_seeds is not None or args.tolerance is not None):
        given = "--max-seeds" if args.max_seeds is not None else "--tolerance"
        raise UserError(f"--seeds {args.seeds} asks for the fixed design and {given} for the sequential one; "
                        "give one of them (leave --seeds out to add seeds until each arm is decided)")
    if args.seeds is not None:
        if args.seeds < MIN_SEEDS:
            raise UserError(f"--seeds {args.seeds}: one seed gives no interval and no paired test; give --seeds "
                            f"{MIN_SEEDS} or more, or leave it out for the sequential design")
        return args.seeds, None
    max_seeds = section.max_seeds if args.max_seeds is None else args.max_seeds
    if max_seeds < FIRST_LOOK:
        raise UserError(f"--max-seeds {max_seeds}: the sequential design first looks at {FIRST_LOOK} seeds; give "
                        f"--max-seeds {FIRST_LOOK} or more (or --seeds N for a fixed design)")
    tolerance = section.tolerance if args.tolerance is None else args.tolerance
    if not 0 <= tolerance < 1:
        raise UserError(f"--tolerance {tolerance}: give a difference of validation error in [0, 1), e.g. 0.005 "
                        "for half a percentage point (0: never call arms equivalent)")
    return max_seeds, tolerance


__all__ = ["Arm", "PLAIN", "check_seeds", "parse_budgets", "pick_reference", "study_arms"]
