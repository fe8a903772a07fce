"""The comparison's report: `automl compare -o` and `automl report` on a comparison write the same page (the
verdicts, the per-budget tables with the tests, the two figures), from the database alone for the latter."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from automl.cli import main
from automl.report.comparison_report import _pareto_front, build_comparison_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The text of each list item and table cell of a page, by the id of the list or table it is in."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, list[str]] = {}
        self.figures: list[str] = []
        self._in: str | None = None
        self._text: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("ul", "table") and attrs.get("id"):
            self._in = attrs["id"]
            self.by_id[self._in] = []
        elif tag in ("li", "td") and self._in:
            self._text = []
        elif tag == "figure":
            self.figures.append(attrs["id"])

    def handle_endtag(self, tag):
        if tag in ("li", "td") and self._text is not None:
            self.by_id[self._in].append(" ".join("".join(self._text).split()))
            self._text = None
        elif tag in ("ul", "table"):
            self._in = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def _verdict_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(r"^cosine\+probe: ", line)]


def test_compare_writes_the_report_and_report_rebuilds_it_from_the_database(compare, sqlite_url, tmp_path):
    first = tmp_path / "compare.html"
    code, out, err = compare("--seeds", "2", "--budgets", "4steps,6steps", "-o", str(first),
                             "--png", str(tmp_path / "figures"))
    assert code == 0, err
    assert f"wrote {first}" in err
    page = Page(first.read_text())
    # The page says what the command printed, word for word.
    assert page.by_id["verdicts"] == _verdict_lines(out) and len(page.by_id["verdicts"]) == 1
    assert "not distinguishable from probe at 4steps" in page.by_id["verdicts"][0]
    assert page.figures == ["figure-error_vs_budget", "figure-error_vs_cost"]
    for name in ("error_vs_budget", "error_vs_cost"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    assert {"budget-4steps", "budget-6steps"} <= set(page.by_id)
    assert "reference" in page.by_id["budget-6steps"]  # the reference's row says it is the reference

    # The same numbers as --json gives, in the tables.
    code, out, _ = compare("--seeds", "2", "--budgets", "4steps,6steps", "--json")  # trains nothing more
    result = json.loads(out)
    row = next(r for r in result["budgets"][1]["arms"] if r["arm"] == "cosine+probe")
    assert f"{row['mean']:.4f} [{row['ci'][0]:.4f}, {row['ci'][1]:.4f}]" in page.by_id["budget-6steps"]
    assert f"{row['vs_reference']['p']:.3g}" in page.by_id["budget-6steps"]

    # `automl report` on one budget study of the comparison: the whole comparison, from the database alone.
    again = tmp_path / "report.html"
    assert main(["report", "tiny-compare-4steps", "--storage", sqlite_url, "-o", str(again)]) == 0
    rebuilt = Page(again.read_text())
    assert rebuilt.by_id == page.by_id
    # And on the study file, asked for its comparison.
    third = tmp_path / "third.html"
    study_file = tmp_path / "study.toml"
    assert main(["report", str(study_file), "--storage", sqlite_url, "--comparison", "-o", str(third)]) == 0
    assert Page(third.read_text()).by_id == page.by_id


def test_a_study_without_a_comparison_is_one_line_exit_2(write_study, sqlite_url, tmp_path, capsys):
    assert main(["run", str(write_study(n_trials=1)), "--storage", sqlite_url]) == 0
    capsys.readouterr()
    html = tmp_path / "x.html"
    assert main(["report", "tiny", "--storage", sqlite_url, "--comparison", "-o", str(html)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("automl: error: no comparison of study 'tiny' in this database") and err.count("\n") == 1
    assert not html.exists()


def test_a_bad_output_path_is_refused_before_any_cell_is_trained(compare, sqlite_url, tmp_path):
    code, _, err = compare("--seeds", "2", "-o", str(tmp_path / "missing" / "r.html"))
    assert code == 2 and "folder" in err and "does not exist" in err, err
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def _result(rows_by_budget: dict[str, list[dict]], reference: str = "a") -> dict:
    """A comparison result as `comparison` makes it, with made-up numbers."""
    budgets = []
    for budget, rows in rows_by_budget.items():
        full = [{"arm": r["arm"], "tricks": [], "n": 3, "mean": r["mean"], "ci": r.get("ci"),
                 "single_model_mean": r.get("single", r["mean"]), "inference_cost": r.get("cost", 1),
                 "inference_ms_per_1000": r.get("ms"), "inference_flops_per_image": None, "steps": 10,
                 "seeds": [0, 1, 2], "values": [r["mean"]] * 3, "seeds_used": 3, "decided": "undecided",
                 "decided_at": None,
                 "vs_reference": None if r["arm"] == reference or r["mean"] is None else {
                     "diff": r["mean"] - 0.2, "ci": [-0.1, 0.1], "p": r.get("p", 0.5), "p_holm": r.get("p", 0.5),
                     "p_better": 0.5}} for r in rows]
        budgets.append({"budget": budget, "study": f"s-compare-{budget}", "arms": full})
    return {"study": "s", "reference": reference, "seeds": 3, "ci_method": "t", "test": "a test",
            "design": "fixed", "sequential": None, "budgets": budgets, "crossings": []}


def test_the_pareto_front_keeps_only_the_arms_no_cheaper_arm_beats():
    points = [(1.0, 0.30), (1.0, 0.25), (2.0, 0.28), (3.0, 0.20), (4.0, 0.22)]
    assert _pareto_front(points) == [(1.0, 0.25), (3.0, 0.20)]


def test_the_figures_are_drawn_with_missing_cells_and_counted_costs_only():
    result = _result({
        "10s": [{"arm": "a", "mean": 0.2, "ci": [0.1, 0.3]}, {"arm": "b", "mean": None}],
        "20s": [{"arm": "a", "mean": 0.15, "ci": [0.1, 0.2]},
                {"arm": "b", "mean": 0.1, "ci": None, "single": 0.14, "cost": 4}],
    })
    report = build_comparison_report(result, "sqlite:///x.db")
    assert [f.name for f in report.figures] == ["error_vs_budget", "error_vs_cost"]
    assert all(f.png is not None and f.png.startswith(PNG_MAGIC) for f in report.figures)
    # No measured latency: the cost axis is the forward passes, and the caption says so.
    assert "forward passes per prediction" in report.figures[1].caption


@pytest.mark.parametrize(("p", "word"), [(0.01, "better than a"), (0.2, "not distinguishable from a")])
def test_the_page_words_a_verdict_no_more_strongly_than_the_test(tmp_path, p, word):
    from automl.report.study_report import write_report

    result = _result({"10s": [{"arm": "a", "mean": 0.2, "ci": [0.1, 0.3]},
                              {"arm": "b", "mean": 0.1, "ci": [0.05, 0.15], "p": p}]})
    html = tmp_path / "r.html"
    write_report(build_comparison_report(result, "sqlite:///x.db"), html, None)
    assert Page(html.read_text()).by_id["verdicts"] == [f"b: {word} at 10s (p = {p:.3g}, {p:.3g} after Holm)"]
