"""Tests of the plugin host: discovery, loading plugin files, blocking, and validation of tricks."""

from __future__ import annotations

import os
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from automl.errors import UserError
from automl.host import GROUP, get_host, validate_trick
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


def test_missing_file_is_reported(tmp_path):
    host = get_host([tmp_path / "absent.py"], environ={})
    assert "absent.py" in _failure(host, "absent").reason
    assert BUILTINS <= set(host.tricks)


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
