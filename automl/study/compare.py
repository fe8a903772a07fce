"""Honest comparisons: the fixed recipes a study file leaves open, each trained at several budgets over the same
paired seeds as ordinary Optuna trials, and what the statistics over those seeds allow one to say of them.

Each budget is one Optuna study, ``<name>-compare-<budget>``, in the study's database; each (arm, seed) cell is
one trial queued with the arm's parameters and the seed index (``records.ATTR_COMPARE_SEED``), run by the
ordinary worker loop, so the ledger, recovery and retries apply and a second run trains only the missing cells.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from automl import stats
from automl.budget import Budget
from automl.errors import UserError
from automl.overrides import contains, describe
from automl.space import select_tricks
from automl.trick_space import ENABLED, OWNER_PREFIX
from automl.storage import open_storage
from automl.storage.ledger import Ledger
from automl.storage.optuna_adapter import study_engine
from automl import records
from automl.seeds import MIN_SEEDS
from automl.study.recovery import will_retry
from automl.study.runner import PreparedStudy, create_study, run_study, sampler_seed
from automl.train.settings import SEARCH_PREFIX
from automl.run import TrialContext
from automl.trick_errors import TrickError

ALPHA = 0.05
"""The level at which a verdict says "better" or "worse" (p after Holm at most this)."""
PLAIN = "plain"
"""The name of the arm that enables no trick."""
_PRESENT = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
"""A cell with a trial in one of these states is not queued again (a running one may be a dead run's: recovery
fails and retries it)."""


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


def check_seeds(seeds: int) -> int:
    if seeds < MIN_SEEDS:
        raise UserError(f"--seeds {seeds}: one seed gives no interval and no paired test; give --seeds "
                        f"{MIN_SEEDS} or more (6 or more for the sign-flip test to be able to reach p < 0.05)")
    return seeds


def compare_name(name: str, budget: Budget) -> str:
    """The Optuna study that holds a comparison's cells at one budget."""
    return f"{name}-compare-{budget}"


def check_recipes(prepared: PreparedStudy, arms: Sequence[Arm], budgets: Sequence[Budget]) -> None:
    """Each arm's earlier cells trained the recipe the study file gives it now: one name for two recipes
    would mix them in one mean."""
    try:
        storage = open_storage(prepared.storage_url, create=False)
    except UserError:
        return  # no database yet (or none reachable, which creating the study reports): no earlier cells
    recipes = {arm.name: arm.params for arm in arms}
    for budget in budgets:
        try:
            trials = storage.get_all_trials(storage.get_study_id_from_name(compare_name(prepared.name, budget)),
                                            deepcopy=False)
        except KeyError:
            continue
        for trial in trials:
            arm = trial.user_attrs.get(records.ATTR_COMPARE_ARM)
            if arm not in recipes or not trial.params or trial.params == recipes[arm]:
                continue
            key = next(k for k in sorted({*trial.params, *recipes[arm]})
                       if trial.params.get(k) != recipes[arm].get(k))
            raise UserError(f"arm {arm!r} was trained at {budget} with {key} = {trial.params.get(key)!r}, but "
                            f"{prepared.study_file.path} now gives {recipes[arm].get(key)!r}: its seeds would mix "
                            "two recipes; give the study another [study] name to compare the new ones")


def cell_of(first: FrozenTrial) -> tuple[str | None, int | None]:
    """(arm, seed index) of a trial, read off the first trial of its retry chain."""
    return first.user_attrs.get(records.ATTR_COMPARE_ARM), first.user_attrs.get(records.ATTR_COMPARE_SEED)


def _to_retry(trials: Sequence[FrozenTrial]) -> set[int]:
    """The failed trials recovery will queue again and has not yet (an interrupted cell, a dead worker's)."""
    retried = {t.system_attrs.get(records.SYS_RETRY_OF) for t in trials}
    return {t.number for t in trials if t.state == TrialState.FAIL and will_retry(t) and t.number not in retried}


def present_cells(study: optuna.Study) -> set[tuple[str | None, int | None]]:
    """The cells trained, being trained, queued, or to be retried by recovery: none of them is queued again."""
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    to_retry = _to_retry(trials)
    return {cell_of(by_number[records.original_number(t)]) for t in trials
            if t.state in _PRESENT or t.number in to_retry}


def queue_missing(study: optuna.Study, arms: Sequence[Arm], seeds: int) -> int:
    """Queue the (arm, seed) cells the study lacks, seed by seed (so a stopped run has whole seeds); how many."""
    present = present_cells(study)
    queued = 0
    for seed in range(seeds):
        for arm in arms:
            if (arm.name, seed) not in present:
                study.enqueue_trial(arm.params, user_attrs={records.ATTR_COMPARE_ARM: arm.name,
                                                            records.ATTR_COMPARE_SEED: seed})
                queued += 1
    return queued


def budget_study(prepared: PreparedStudy, budget: Budget, *, session: int | None = None,
                 worker: int | None = None, name: str | None = None) -> tuple[PreparedStudy, optuna.Study]:
    """The study of one budget (``name``, default ``compare_name``), created or resumed: by a comparison's own
    run (``session`` None: it takes the next session), or by one of its ``--workers`` (its parent's
    ``session``, its index)."""
    cells = dataclasses.replace(prepared, name=name or compare_name(prepared.name, budget), trial_budget=budget,
                                total_budget=None, n_trials=None)
    if session is not None:
        cells.session, cells.worker = session, worker
    study = create_study(cells, new_session=session is None)
    if records.STUDY_COMPARE not in study.user_attrs:
        study.set_user_attr(records.STUDY_COMPARE, {"study": prepared.name, "budget": str(budget)})
    # Every parameter of a cell is fixed when it is queued: nothing is sampled, and a fixed recipe is never cut
    # short, whatever the study file says of its sampler and pruner.
    study.sampler = optuna.samplers.RandomSampler(seed=sampler_seed(prepared.seed, cells.session, worker))
    study.pruner = optuna.pruners.NopPruner()
    return cells, study


def record_design(study: optuna.Study, arms: Sequence[Arm], reference: Arm, seeds: int) -> None:
    """Write the comparison's arms, reference and seeds on the budget's study, so that `automl report` can
    rebuild the comparison from the database alone."""
    described = {**study.user_attrs[records.STUDY_COMPARE], "reference": reference.name, "seeds": seeds,
                 "arms": [{"arm": arm.name, "tricks": list(arm.tricks)} for arm in arms]}
    if described != study.user_attrs[records.STUDY_COMPARE]:
        study.set_user_attr(records.STUDY_COMPARE, described)


def queue_budget(cells: PreparedStudy, study: optuna.Study, arms: Sequence[Arm], reference: Arm,
                 seeds: int) -> int:
    """Queue the missing cells and bound the study to them (``cells.n_trials``); how many cells are to run."""
    record_design(study, arms, reference, seeds)
    queue_missing(study, arms, seeds)
    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials) + len(_to_retry(trials))
    # The ledger counts the trials started (a retried one gives its place to its retry): room for exactly the
    # queued ones and the retries recovery is about to queue, so the worker loop ends when the queue is empty
    # and never samples a trial of its own.
    cells.n_trials = Ledger(study_engine(study), cells.name).totals().trials + waiting
    return waiting


def run_budget(prepared: PreparedStudy, arms: Sequence[Arm], reference: Arm, budget: Budget, seeds: int, *,
               on_queued: Callable[[int], Any] | None = None,
               on_trial: Callable[[optuna.Study, FrozenTrial], Any] | None = None,
               name: str | None = None) -> optuna.Study:
    """Train the missing cells of one budget in this process; the study holds them all after."""
    cells, study = budget_study(prepared, budget, name=name)
    waiting = queue_budget(cells, study, arms, reference, seeds)
    if on_queued is not None:
        on_queued(waiting)
    if waiting:
        run_study(cells, study, on_trial=on_trial)
    return study


def completed_cells(study: optuna.Study, seeds: int) -> dict[str, dict[int, FrozenTrial]]:
    """``{arm: {seed: its completed trial}}`` over the first ``seeds`` seeds."""
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    done: dict[str, dict[int, FrozenTrial]] = {}
    for trial in trials:
        arm, seed = cell_of(by_number[records.original_number(trial)])
        if trial.state == TrialState.COMPLETE and arm is not None and seed is not None and seed < seeds:
            done.setdefault(arm, {})[seed] = trial
    return done


def missing_cells(done: dict[str, dict[int, FrozenTrial]], arms: Sequence[Arm], seeds: int) -> int:
    """How many of the (arm, seed) cells have no completed trial."""
    return sum(seed not in done.get(arm.name, {}) for arm in arms for seed in range(seeds))


def _mean(values: Sequence[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def arm_summary(arm: Arm, cells: dict[int, FrozenTrial]) -> dict[str, Any]:
    """One arm at one budget: n, the mean validation error over seeds with its interval, and its costs."""
    trials = [cells[s] for s in sorted(cells)]
    values = [t.value for t in trials]
    mean, ci = stats.mean_ci(values) if len(values) >= MIN_SEEDS else (_mean(values), None)
    attrs = [t.user_attrs for t in trials]
    return {
        "arm": arm.name, "tricks": list(arm.tricks), "n": len(values), "mean": mean,
        "ci": list(ci) if ci is not None else None,
        "single_model_mean": _mean([a.get(records.ATTR_VAL_ERROR_MODEL) for a in attrs]),
        records.INFERENCE_COST: max((a.get(records.INFERENCE_COST, 1) for a in attrs), default=None),
        "inference_ms_per_1000": _mean([a.get(records.ATTR_INFERENCE_MS) for a in attrs]),
        "inference_flops_per_image": _mean([a.get(records.ATTR_INFERENCE_FLOPS) for a in attrs]),
        "steps": _mean([a.get(records.ATTR_STEPS) for a in attrs]),
        "seeds": sorted(cells), "values": values,
    }


def budget_summary(name: str, arms: Sequence[Arm], reference: Arm, budget: Budget,
                   done: dict[str, dict[int, FrozenTrial]]) -> dict[str, Any]:
    """Every arm at one budget, each against the reference over the seeds both completed, Holm across arms."""
    rows = [arm_summary(arm, done.get(arm.name, {})) for arm in arms]
    ref_cells = done.get(reference.name, {})
    tests: dict[str, stats.Versus] = {}
    for arm in arms:
        common = sorted(set(done.get(arm.name, {})) & set(ref_cells))
        if arm is not reference and len(common) >= MIN_SEEDS:
            tests[arm.name] = stats.versus([done[arm.name][s].value for s in common],
                                           [ref_cells[s].value for s in common])
    adjusted = dict(zip(tests, stats.holm([t.p for t in tests.values()])))
    for row in rows:
        test = tests.get(row["arm"])
        row["vs_reference"] = test.as_dict(adjusted[row["arm"]]) if test is not None else None
    return {"budget": str(budget), "study": compare_name(name, budget), "arms": rows}


def comparison(name: str, arms: Sequence[Arm], reference: Arm, seeds: int,
               per_budget: Sequence[tuple[Budget, dict[str, dict[int, FrozenTrial]]]]) -> dict[str, Any]:
    """The whole comparison as ``automl compare --json`` prints it."""
    budgets = [budget_summary(name, arms, reference, budget, done) for budget, done in per_budget]
    means = {b["budget"]: {r["arm"]: r["mean"] for r in b["arms"] if r["mean"] is not None} for b in budgets}
    return {"study": name, "reference": reference.name, "seeds": seeds, "ci_method": stats.MEAN_CI_METHOD,
            "test": "exact sign-flip permutation test on the paired differences, Holm-corrected across arms",
            "budgets": budgets, "crossings": [c.as_dict() for c in stats.crossings(means)]}


def comparison_studies(storage: optuna.storages.BaseStorage, name: str) -> list[optuna.study.StudySummary]:
    """The budget studies `automl compare` made of study ``name`` (or of the comparison one of them belongs to),
    in budget order: seconds, then epochs, then steps, each smallest first."""
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    own = next((s.user_attrs.get(records.STUDY_COMPARE) for s in summaries if s.study_name == name), None)
    compared = own["study"] if own else name
    found = [s for s in summaries if (s.user_attrs.get(records.STUDY_COMPARE) or {}).get("study") == compared]
    order = {"seconds": 0, "epochs": 1, "steps": 2}

    def key(summary: optuna.study.StudySummary) -> tuple[int, float]:
        budget = Budget.parse(summary.user_attrs[records.STUDY_COMPARE]["budget"])
        return order.get(budget.unit, len(order)), budget.amount

    return sorted(found, key=key)


def is_comparison(storage: optuna.storages.BaseStorage, name: str) -> bool:
    """Whether ``name`` is one budget study of a comparison, or names no study but has a comparison."""
    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in summaries:
        return records.STUDY_COMPARE in summaries[name].user_attrs
    return any((s.user_attrs.get(records.STUDY_COMPARE) or {}).get("study") == name for s in summaries.values())


def stored_comparison(storage: optuna.storages.BaseStorage, name: str) -> dict[str, Any]:
    """The comparison of study ``name`` (or the one budget study ``name`` belongs to) as ``comparison`` gives
    it, read from the database alone: the arms, reference and seeds its latest run recorded on each budget."""
    summaries = comparison_studies(storage, name)
    designs = [s.user_attrs[records.STUDY_COMPARE] for s in summaries]
    if not summaries or any("arms" not in d for d in designs):
        raise UserError(f"no comparison of study {name!r} in this database (or one written before automl recorded "
                        f"its arms); run `automl compare` on its study file, then report it")
    arms: dict[str, Arm] = {}
    for design in designs:  # the arms of every budget, in the order the first run that had them gave
        for arm in design["arms"]:
            arms.setdefault(arm["arm"], Arm(arm["arm"], tuple(arm["tricks"]), {}))
    latest = designs[-1]
    seeds = max(d["seeds"] for d in designs)
    per_budget = [(Budget.parse(d["budget"]),
                   completed_cells(optuna.load_study(study_name=s.study_name, storage=storage), seeds))
                  for s, d in zip(summaries, designs)]
    return comparison(latest["study"], list(arms.values()), arms[latest["reference"]], seeds, per_budget)


def verdicts(result: dict[str, Any], alpha: float = ALPHA) -> list[str]:
    """One line per arm against the reference, worded no more strongly than the Holm-corrected test allows:
    better or worse only where p after Holm is at most ``alpha``, else "not distinguishable"."""
    reference = result["reference"]
    lines = []
    for arm in [r["arm"] for r in result["budgets"][0]["arms"] if r["arm"] != reference]:
        said: dict[str, list[str]] = {}
        for entry in result["budgets"]:
            test = next(r for r in entry["arms"] if r["arm"] == arm)["vs_reference"]
            if test is None:
                said.setdefault(f"not tested (fewer than {MIN_SEEDS} paired seeds)", []).append(entry["budget"])
                continue
            word = ("better than" if test["diff"] < 0 else "worse than") if test["p_holm"] <= alpha \
                else "not distinguishable from"
            said.setdefault(word, []).append(f"{entry['budget']} (p = {test['p']:.3g}, "
                                             f"{test['p_holm']:.3g} after Holm)")
        parts = [f"{word} {reference} at {', '.join(where)}" if word.endswith(("than", "from"))
                 else f"{word} at {', '.join(where)}" for word, where in said.items()]
        lines.append(f"{arm}: " + "; ".join(parts))
    return lines


def power_note(result: dict[str, Any]) -> str | None:
    """Said when the seeds are too few for any p after Holm to reach ``ALPHA``: then "not distinguishable" is
    all a comparison can say, and the note says how many seeds could say more."""
    tested = len(result["budgets"][0]["arms"]) - 1
    floor = min(1.0, smallest_p(result["seeds"]) * tested)  # Holm multiplies the smallest p by the arms tested
    if not tested or floor <= ALPHA:
        return None
    needed = next(n for n in range(MIN_SEEDS, 64) if smallest_p(n) * tested <= ALPHA)
    return (f"with {result['seeds']} seeds and {tested} arm(s) against {result['reference']}, no p after Holm can "
            f"fall below {floor:.3g}, so no arm can be told better or worse; --seeds {needed} or more can")


def smallest_p(seeds: int) -> float:
    """The smallest two-sided p-value the exact sign-flip test can give with ``seeds`` pairs: 2 / 2^n."""
    return 2.0 / 2 ** seeds if seeds <= stats.EXACT_SIGN_FLIPS_UP_TO else 1.0 / (stats.SIGN_FLIP_DRAWS + 1)


__all__ = ["ALPHA", "Arm", "PLAIN", "arm_summary", "budget_study", "budget_summary", "check_recipes", "check_seeds",
           "compare_name", "comparison", "comparison_studies", "completed_cells", "missing_cells", "parse_budgets",
           "is_comparison", "pick_reference", "power_note", "present_cells", "queue_budget", "queue_missing", "record_design",
           "run_budget", "smallest_p", "stored_comparison", "study_arms", "verdicts"]
