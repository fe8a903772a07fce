"""Tests of the plugin host: discovery, loading plugin files, blocking, and validation of tricks."""

from __future__ import annotations

import os
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from automl.errors import UserError
from automl.host import GROUP, get_host
from automl.trick_checks import validate_trick
from automl.trick import Trick

BUILTINS = {"warmup", "cosine", "label_smoothing"}


def _plugin(tmp_path: Path, stem: str, body: str) -> Path:
    path = tmp_path / f"{stem}.py"
    path.write_text(textwrap.dedent(body))
    return path


def _good(tmp_path: Path, stem: str = "good_plugin", trick: str = "good") -> Path:
    return _plugin(tmp_path, stem, f"""
        from automl import Trick, hookimpl

        class Good(Trick):
            name = {trick!r}

            @classmethod
            def search_space(cls, trial):
                return {{"x": trial.suggest_float("x", 0.0, 1.0)}}

            def __init__(self, x=0.5):
                self.x = x

        @hookimpl
        def automl_register_tricks():
            return [Good]
        """)


def _failure(host, plugin: str):
    found = [f for f in host.failures if f.plugin == plugin]
    assert len(found) == 1, f"expected one failure of {plugin!r}, got {host.failures}"
    return found[0]


# ---------------------------------------------------------------------------- discovery


def test_builtins_are_found_through_the_entry_point_group():
    host = get_host(environ={})
    assert BUILTINS <= set(host.tricks)
    assert host.failures == []
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    for name in BUILTINS:
        info = host.trick(name)
        ep = eps[name]
        assert info.plugin == name
        assert info.source == f"{ep.dist.name} {ep.dist.version}: {ep.value}"
        assert info.cls.__module__ == ep.value
        assert issubclass(info.cls, Trick) and info.cls.name == name
        assert host.pm.get_plugin(name) is not None


def test_plugin_path_is_loaded(tmp_path):
    path = _good(tmp_path)
    host = get_host([path], environ={})
    info = host.trick("good")
    assert info.plugin == "good_plugin"
    assert info.source == str(path)
    assert info.cls().x == 0.5
    assert BUILTINS <= set(host.tricks)
    assert host.failures == []


def test_plugins_from_the_environment_are_loaded(tmp_path):
    a = _good(tmp_path, "plugin_a", "trick_a")
    b = _good(tmp_path, "plugin_b", "trick_b")
    host = get_host(environ={"AUTOML_PLUGINS": os.pathsep.join([str(a), str(b)])})
    assert host.trick("trick_a").source == str(a)
    assert host.trick("trick_b").source == str(b)
    assert host.failures == []


def test_paths_and_environment_combine(tmp_path):
    a = _good(tmp_path, "plugin_a", "trick_a")
    b = _good(tmp_path, "plugin_b", "trick_b")
    host = get_host([a], environ={"AUTOML_PLUGINS": str(b)})
    assert {"trick_a", "trick_b"} <= set(host.tricks)


def test_disable_blocks_builtins_by_name():
    host = get_host(environ={"AUTOML_DISABLE_PLUGINS": "warmup,cosine"})
    assert set(host.tricks) & BUILTINS == {"label_smoothing"}
    assert host.pm.get_plugin("warmup") is None
    assert host.failures == []


def test_disabled_broken_plugin_is_not_imported(tmp_path):
    marker = tmp_path / "imported"
    path = _plugin(tmp_path, "broken", f"""
        open({str(marker)!r}, "w").close()
        raise ImportError("this plugin is broken")
        """)
    host = get_host([path], environ={"AUTOML_DISABLE_PLUGINS": "broken"})
    assert not marker.exists()
    assert host.failures == []
    # Without the blocklist the same file is imported, and fails.
    host = get_host([path], environ={})
    assert marker.exists()
    assert "this plugin is broken" in _failure(host, "broken").reason


# ---------------------------------------------------------------------------- broken plugins


def test_syntax_error_is_reported_and_the_others_keep_working(tmp_path):
    bad = _plugin(tmp_path, "typo", "def automl_register_tricks(:\n    pass\n")
    good = _good(tmp_path)
    host = get_host([bad, good], environ={})
    failure = _failure(host, "typo")
    assert "SyntaxError" in failure.reason
    assert failure.source == str(bad)
    assert "typo" in str(failure)
    assert {"good", *BUILTINS} <= set(host.tricks)


def test_import_error_is_reported_with_its_reason(tmp_path):
    bad = _plugin(tmp_path, "needs_dep", "raise ImportError('No module named notinstalled')\n")
    good = _good(tmp_path)
    host = get_host([good, bad], environ={})
    failure = _failure(host, "needs_dep")
    assert "ImportError" in failure.reason and "notinstalled" in failure.reason
    assert "good" in host.tricks
    assert host.pm.get_plugin("needs_dep") is None


def test_a_missing_path_is_a_user_error(tmp_path):
    # Asked for by name: a typo in --plugin must not run the study without the plugin.
    with pytest.raises(UserError, match="absent.py' does not exist; give a plugin's .py file or package folder"):
        get_host([tmp_path / "absent.py"], environ={})
    with pytest.raises(UserError, match="gone' does not exist"):
        get_host(environ={"AUTOML_PLUGINS": str(tmp_path / "gone")})


def test_unknown_hook_is_dropped_naming_it_and_the_valid_ones(tmp_path):
    path = _plugin(tmp_path, "typo_hook", """
        from automl import Trick, hookimpl

        class Orphan(Trick):
            name = "orphan"

        @hookimpl
        def automl_foo():
            return 1

        @hookimpl
        def automl_register_tricks():
            return [Orphan]
        """)
    host = get_host([path], environ={})
    reason = _failure(host, "typo_hook").reason
    assert "automl_foo" in reason
    assert "automl_register_tricks" in reason.split("valid")[1]
    assert "orphan" not in host.tricks
    assert host.pm.get_plugin("typo_hook") is None


def test_non_trick_is_dropped(tmp_path):
    path = _plugin(tmp_path, "not_a_trick", """
        from automl import hookimpl

        class Plain:
            name = "plain"

        @hookimpl
        def automl_register_tricks():
            return [Plain]
        """)
    host = get_host([path], environ={})
    reason = _failure(host, "not_a_trick").reason
    assert "Plain" in reason and "not a subclass of automl.Trick" in reason
    assert "plain" not in host.tricks
    assert host.pm.get_plugin("not_a_trick") is None


@pytest.mark.parametrize("name", ["Bad-Name", "train", "owner", "9lives", ""])
def test_bad_trick_name_is_dropped(tmp_path, name):
    path = _plugin(tmp_path, "badly_named", f"""
        from automl import Trick, hookimpl

        class Named(Trick):
            name = {name!r}

        @hookimpl
        def automl_register_tricks():
            return [Named]
        """)
    host = get_host([path], environ={})
    reason = _failure(host, "badly_named").reason
    assert repr(name) in reason
    assert "Named.name" in reason
    assert name not in host.tricks


def test_trick_rejecting_its_own_search_space_is_dropped(tmp_path):
    path = _plugin(tmp_path, "self_rejecting", """
        from automl import Trick, hookimpl

        class Picky(Trick):
            name = "picky"

            @classmethod
            def search_space(cls, trial):
                return {"rate": trial.suggest_float("rate", 0.0, 10.0)}

            def __init__(self, rate=0.1):
                if rate > 1:
                    raise ValueError(f"rate must be <= 1, got {rate=}")
                self.rate = rate

        @hookimpl
        def automl_register_tricks():
            return [Picky]
        """)
    good = _good(tmp_path)
    host = get_host([path, good], environ={})
    reason = _failure(host, "self_rejecting").reason
    assert "Picky" in reason and "search space" in reason and "rate must be <= 1" in reason
    assert "picky" not in host.tricks and "good" in host.tricks


def test_raising_hook_is_dropped(tmp_path):
    path = _plugin(tmp_path, "raises", """
        from automl import hookimpl

        @hookimpl
        def automl_register_tricks():
            raise RuntimeError("cannot list my tricks")
        """)
    host = get_host([path], environ={})
    assert "cannot list my tricks" in _failure(host, "raises").reason
    assert BUILTINS <= set(host.tricks)


def test_validate_trick_names_the_problem():
    class BadOwns(Trick):
        name = "bad_owns"
        owns = ["lr_schedule"]

    with pytest.raises(ValueError, match="BadOwns.owns"):
        validate_trick(BadOwns)
    with pytest.raises(ValueError, match="not a subclass"):
        validate_trick(42)


# ---------------------------------------------------------------------------- names


def test_duplicate_trick_names_both_sources(tmp_path):
    a = _good(tmp_path, "first", "same")
    b = _good(tmp_path, "second", "same")
    with pytest.raises(UserError) as info:
        get_host([a, b], environ={})
    assert str(a) in str(info.value) and str(b) in str(info.value)
    assert "'same'" in str(info.value)


def test_duplicate_of_a_builtin_names_the_distribution(tmp_path):
    path = _good(tmp_path, "my_warmup", "warmup")
    builtin = get_host(environ={}).trick("warmup").source
    with pytest.raises(UserError) as info:
        get_host([path], environ={})
    assert builtin in str(info.value) and str(path) in str(info.value)


def test_unknown_trick_lists_the_valid_names():
    host = get_host(environ={})
    with pytest.raises(UserError) as info:
        host.trick("nope")
    message = str(info.value)
    assert "'nope'" in message
    assert ", ".join(sorted(host.tricks)) in message


# ---------------------------------------------------------------------------- spaces, resources, hooks


def _one_trick(tmp_path: Path, stem: str, body: str) -> Path:
    """A plugin file registering the class ``T`` defined by ``body``."""
    return _plugin(tmp_path, stem, "from automl import Trick, hookimpl\n\n" + textwrap.dedent(body) + """
@hookimpl
def automl_register_tricks():
    return [T]
""")


def test_an_init_refusing_a_sampled_point_of_its_space_is_refused_at_load_by_name(tmp_path):
    # The centre of the space (5.0) is accepted: only sampling finds the points __init__ refuses.
    path = _one_trick(tmp_path, "half_picky", """
class T(Trick):
    name = "half_picky"

    @classmethod
    def search_space(cls, trial):
        return {"rate": trial.suggest_float("rate", 0.0, 10.0)}

    def __init__(self, rate=5.0):
        if rate > 6:
            raise ValueError(f"rate must be <= 6, got {rate=}")
        self.rate = rate
""")
    host = get_host([path], environ={})
    reason = _failure(host, "half_picky").reason
    assert "T refuses a point of its own search space (half_picky.rate=" in reason and "rate must be <= 6" in reason
    assert "half_picky" not in host.tricks
    with pytest.raises(UserError, match=r"trick 'half_picky' cannot be used: its plugin 'half_picky' .* "
                                        r"was skipped: T refuses a point"):
        host.trick("half_picky")


def test_a_space_whose_choices_change_between_trials_is_refused_at_load(tmp_path):
    path = _one_trick(tmp_path, "shifty", """
import itertools
_calls = itertools.count()

class T(Trick):
    name = "shifty"

    @classmethod
    def search_space(cls, trial):
        return {"k": trial.suggest_categorical("k", [1, 2] if next(_calls) % 2 else [3, 4])}

    def __init__(self, k=1):
        self.k = k
""")
    reason = _failure(get_host([path], environ={}), "shifty").reason
    assert "T refuses a point of its own search space" in reason and "CategoricalDistribution" in reason


def test_the_parameter_name_enabled_is_reserved(tmp_path):
    path = _one_trick(tmp_path, "uses_enabled", """
class T(Trick):
    name = "uses_enabled"

    @classmethod
    def search_space(cls, trial):
        return {"enabled": trial.suggest_categorical("enabled", ["yes", "no"])}

    def __init__(self, enabled="yes"):
        self.enabled = enabled
""")
    reason = _failure(get_host([path], environ={}), "uses_enabled").reason
    assert "T.search_space suggests 'enabled', a name the host keeps for uses_enabled.enabled" in reason


def test_a_misspelt_resource_is_refused_naming_the_trick_and_the_near_names(tmp_path):
    path = _one_trick(tmp_path, "typo_owner", """
class T(Trick):
    name = "typo_owner"
    owns = ("lr_shedule",)
""")
    host = get_host([path], environ={})
    reason = _failure(host, "typo_owner").reason
    assert "T.owns names 'lr_shedule', which is not a resource (did you mean 'lr_schedule'?)" in reason
    assert "declares = ('lr_shedule',)" in reason
    with pytest.raises(UserError, match="trick 'typo_owner' cannot be used: .*lr_shedule"):
        host.trick("typo_owner")


def test_a_declared_resource_may_be_owned_and_is_shared_out_like_the_others(tmp_path):
    path = _plugin(tmp_path, "own_resource", """
        from automl import Trick, hookimpl

        class A(Trick):
            name = "holder_a"
            declares = ("palette",)
            owns = ("palette",)

        class B(A):
            name = "holder_b"

        @hookimpl
        def automl_register_tricks():
            return [A, B]
        """)
    host = get_host([path], environ={})
    assert host.failures == [] and host.trick("holder_b").cls.owns == ("palette",)
    assert host.trick("holder_a").describe()["owns"] == ["palette"]


@pytest.mark.parametrize("declares", ['"palette"', '("Bad Name",)', '(3,)'])
def test_declares_must_be_a_tuple_of_names(tmp_path, declares):
    path = _one_trick(tmp_path, "bad_declares", f"""
class T(Trick):
    name = "bad_declares"
    declares = {declares}
""")
    assert "T.declares = " in _failure(get_host([path], environ={}), "bad_declares").reason


def test_a_method_named_almost_like_a_hook_is_warned_about(tmp_path):
    path = _one_trick(tmp_path, "near_miss", """
class T(Trick):
    name = "near_miss"

    def on_step_ends(self, run, loss):
        pass

    def predict_all(self, run, x):   # a helper of its own: not near enough to a hook
        pass
""")
    host = get_host([path], environ={})
    assert "near_miss" in host.tricks  # loaded all the same: it is only a warning
    assert host.warnings == ["trick 'near_miss': T.on_step_ends is not a hook, so the trainer never calls it; "
                             "did you mean on_step_end?"]
    assert get_host(environ={}).warnings == []  # the built-ins have none


def test_a_package_folder_is_a_plugin(tmp_path):
    package = tmp_path / "folder_tricks"
    package.mkdir()
    (package / "__init__.py").write_text("from .impl import automl_register_tricks  # noqa: F401\n")
    (package / "impl.py").write_text(_good(tmp_path, "unused", "from_folder").read_text())
    host = get_host([package], environ={})
    assert host.failures == []
    info = host.trick("from_folder")
    assert info.plugin == "folder_tricks" and info.source == str(package) and info.cls().x == 0.5
    empty = tmp_path / "not_a_package"
    empty.mkdir()
    assert "folder without __init__.py" in _failure(get_host([empty], environ={}), "not_a_package").reason


def test_a_failure_keeps_its_traceback(tmp_path):
    path = _plugin(tmp_path, "deep_error", """
        def helper():
            raise KeyError("buried")

        helper()
        """)
    failure = _failure(get_host([path], environ={}), "deep_error")
    assert "Traceback (most recent call last)" in failure.traceback and "in helper" in failure.traceback


def test_an_explicit_plugin_named_like_an_installed_one_is_an_error(tmp_path):
    path = _good(tmp_path, "cosine", "my_cosine")
    with pytest.raises(UserError, match=r"is named 'cosine', like an installed plugin \(automl .*: automl_plugins"
                                        r".cosine\); rename it \(a plugin path is named by its stem\)"):
        get_host([path], environ={})
    assert "my_cosine" in get_host([path.rename(tmp_path / "my_cosine.py")], environ={}).tricks


def _installed(site: Path, dist: str, module: str, body: str) -> None:
    """A distribution installed into ``site`` with one entry point of group automl, as pip leaves one."""
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[automl]\n{module} = {module}\n")


def test_a_clash_between_installed_plugins_blocks_that_name_only(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    _installed(site, "rival-tricks", "rival_tricks", """
        from automl import Trick, hookimpl

        class Cosine(Trick):
            name = "cosine"

        class Fresh(Trick):
            name = "fresh"

        @hookimpl
        def automl_register_tricks():
            return [Cosine, Fresh]
        """)
    monkeypatch.syspath_prepend(str(site))
    host = get_host(environ={})
    assert "fresh" in host.tricks and "warmup" in host.tricks and "cosine" not in host.tricks
    assert host.trick("fresh").source == "rival-tricks 0.3: rival_tricks"
    with pytest.raises(UserError) as info:
        host.trick("cosine")
    builtin = get_host(environ={"AUTOML_DISABLE_PLUGINS": "rival_tricks"}).trick("cosine").source
    assert str(info.value) == (f"trick 'cosine' cannot be used: trick 'cosine' is provided twice: by {builtin} and "
                               "by rival-tricks 0.3: rival_tricks; disable one with "
                               "AUTOML_DISABLE_PLUGINS=automl_plugins.cosine or rival_tricks")
    assert get_host(environ={"AUTOML_DISABLE_PLUGINS": "automl_plugins.cosine"}).trick("cosine").source == \
        "rival-tricks 0.3: rival_tricks"
