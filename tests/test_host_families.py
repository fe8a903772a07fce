"""Source families: a prefix registered by a plugin resolves PREFIX:NAME for models and data sets, a bad
registration drops its plugin with the reason, a prefix two plugins provide is blocked, the messages list them."""

from __future__ import annotations

import pytest

from automl.errors import UserError
from automl.host import DATASET, MODEL, get_host
from automl.train.datasets import check_dataset_name, load_dataset
from automl.train.models import resolve_model
from tests.test_host_datasets import _plugin

FAMILY = """
from automl import hookimpl
from automl.train.models import ModelSource
from automl.train.sources import load_synthetic
from torch import nn

SEEN = []

def models(spec, *, folders=()):
    SEEN.append(spec)
    return ModelSource(spec, lambda *, in_channels, num_classes: nn.Linear(in_channels, num_classes),
                       {"plugin": "zoo", "source": "the zoo"})

def datasets(spec, *, folders=()):
    return load_synthetic, "the zoo's data"

@hookimpl
def automl_register_model_families():
    return {"zoo": models}

@hookimpl
def automl_register_dataset_families():
    return {"zoo": datasets}
"""


def test_a_family_resolves_its_prefix_for_models_and_data_sets(tmp_path):
    host = get_host([_plugin(tmp_path, "zoo", FAMILY)], environ={})
    source = resolve_model("zoo:anything", host=host)
    assert source.origin == {"plugin": "zoo", "source": "the zoo"}
    assert tuple(source.build(in_channels=3, num_classes=5).weight.shape) == (5, 3)
    data = load_dataset("zoo:toy", host=host, shape=(1, 4, 4), n_train=8, n_val=4, n_test=4, num_classes=2)
    assert data.num_classes == 2
    assert host.forms(MODEL) == "torchvision:NAME, timm:NAME, zoo:NAME or package.module:callable"
    assert host.forms(DATASET) == "torchvision:NAME, zoo:NAME or package.module:callable"
    assert resolve_model("torchvision:resnet18", host=host).origin["plugin"] == "torchvision"  # built-ins kept


def test_without_the_built_in_families_a_prefix_is_unknown_and_says_what_there_is(tmp_path):
    host = get_host([_plugin(tmp_path, "zoo", FAMILY)], environ={"AUTOML_DISABLE_PLUGINS": "families"})
    with pytest.raises(UserError, match=r"model 'torchvision:resnet18': no model family 'torchvision:'; a model is "
                                        r"its name, zoo:NAME$"):
        resolve_model("torchvision:resnet18", host=host)
    with pytest.raises(UserError, match=r"unknown model 'resnet'; valid: .*, small_cnn, zoo:NAME$"):
        resolve_model("resnet", host=host)


@pytest.mark.parametrize("returned, reason", [
    ("['zoo']", "automl_register_model_families: ValueError: returned list, not a dict of model family name"),
    ("{'Zoo': print}", "model family name 'Zoo' must match [a-z][a-z0-9_]* (a prefix), or "
                       "'package.module:callable'"),
    ("{'zoo': 3}", "the resolver of model family 'zoo' is 3, not a callable"),
])
def test_a_bad_family_drops_the_plugin_with_its_reason(tmp_path, returned, reason):
    body = f"from automl import hookimpl\n\n@hookimpl\ndef automl_register_model_families():\n    return {returned}\n"
    host = get_host([_plugin(tmp_path, "bad", body)], environ={})
    assert [f.plugin for f in host.failures] == ["bad"] and reason in host.failures[0].reason
    assert "timm" in host.families[MODEL]  # the others keep working


def test_a_prefix_two_plugins_provide_is_blocked_naming_both(tmp_path):
    body = FAMILY.replace('"zoo": models', '"torchvision": models')
    host = get_host([_plugin(tmp_path, "other", body)], environ={})
    with pytest.raises(UserError, match=r"model 'torchvision:resnet18' cannot be used: model family 'torchvision' is "
                                        r"provided twice: by automl 0.1.0: automl_plugins.families and by .*other.py"):
        resolve_model("torchvision:resnet18", host=host)


def test_the_form_checks_list_the_installed_families():
    with pytest.raises(ValueError, match=r"must be a data set's name .*torchvision:NAME or package.module:callable"):
        check_dataset_name("not a name")
