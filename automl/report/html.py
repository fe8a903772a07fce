"""The HTML report: a Jinja2 template, figures inlined as base64 PNG, so one file holds everything."""

from __future__ import annotations

import base64
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from automl.report.tables import inference_text, ties_line

def _number(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(ci: Any) -> str:
    """`` [low, high]`` after a number, or nothing when it has no interval."""
    return "" if ci is None else f" [{ci[0]:.4f}, {ci[1]:.4f}]"


def _environment() -> Environment:
    # autoescape on for every template, whatever its suffix: study names, trick names and
    # parameter values come from the database and may hold any text.
    env = Environment(loader=PackageLoader("automl.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["number"] = _number
    env.filters["interval"] = _interval
    env.globals["ties_line"] = ties_line
    env.globals["inference_text"] = inference_text
    env.filters["base64"] = lambda data: base64.b64encode(data).decode("ascii")
    return env


def render_html(report: Any) -> str:
    """The whole report (a study's or a comparison's) as one HTML page, from the template it names."""
    return _environment().get_template(report.template).render(r=report)


__all__ = ["render_html"]
