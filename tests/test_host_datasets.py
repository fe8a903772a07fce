"""The host's data sets: registered by a hook, a bad registration dropped with its reason, a clash blocked."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from automl.errors import UserError
from automl.host import get_host
from automl.train.datasets import load_dataset

GOOD = """
from automl import hookimpl
from automl.train.sources import load_synthetic

@hookimpl
def automl_register_datasets():
    return {"{name}": load_synthetic}
"""


def _plugin(folder: Path, stem: str, body: str) -> Path:
    path = folder / f"{stem}.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_plugin_file_adds_a_data_set_that_loads_by_name(tmp_path):
    host = get_host([_plugin(tmp_path, "toy", GOOD.replace("{name}", "toy"))], environ={})
    assert host.datasets["toy"].source == str(tmp_path / "toy.py")
    data = load_dataset("toy", host=host, shape=(1, 4, 4), n_train=8, n_val=4, n_test=4, num_classes=2)
    assert data.input_shape == (1, 4, 4) and data.num_classes == 2


@pytest.mark.parametrize("returned, reason", [
    ("['toy']", "automl_register_datasets: ValueError: returned list, not a dict of data-set name to source"),
    ("{'Toy Set': print}", "data-set name 'Toy Set' must match"),
    ("{'toy': 3}", "the source of data set 'toy' is 3, not a callable"),
])
def test_a_bad_registration_drops_the_plugin_with_its_reason(tmp_path, returned, reason):
    body = f"from automl import hookimpl\n\n@hookimpl\ndef automl_register_datasets():\n    return {returned}\n"
    host = get_host([_plugin(tmp_path, "bad", body)], environ={})
    assert [f.plugin for f in host.failures] == ["bad"] and reason in host.failures[0].reason
    assert "digits" in host.datasets  # the others keep working


def test_a_name_two_plugins_provide_is_blocked_naming_both(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    paths = [_plugin(tmp_path / d, f"p{d}", GOOD.replace("{name}", "digits")) for d in "ab"]
    host = get_host(paths, environ={})
    with pytest.raises(UserError, match=r"dataset 'digits' cannot be used: dataset 'digits' is provided twice: "
                                        r"by automl 0.1.0: automl_plugins.datasets and by .*pa.py and by .*pb.py; "
                                        r"disable one with AUTOML_DISABLE_PLUGINS=automl_plugins.datasets or "):
        host.dataset("digits")
