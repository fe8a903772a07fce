"""A wheel install finds the built-in plugins through the entry-point group, like any third-party plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_wheel_install_registers_the_builtin_plugins(tmp_path, repo_root):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(repo_root)], check=True, capture_output=True)
    (wheel,) = wheels.glob("automl-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    probe = (
        "import importlib.resources, json, automl, automl_plugins\n"
        "from automl.host import get_host\n"
        "from automl.storage import schema\n"
        "host = get_host()\n"
        "print(json.dumps({'automl': automl.__file__, 'plugins': automl_plugins.__file__,\n"
        "                  'tricks': {n: i.cls.__module__ for n, i in host.tricks.items()},\n"
        "                  'failures': [str(f) for f in host.failures],\n"
        "                  'migrations': str(schema.script_location()), 'head': schema.head(),\n"
        "                  'report_template': importlib.resources.files('automl.report')\n"
        "                      .joinpath('templates/report.html.j2').is_file(),\n"
        "                  'trick_templates': sorted(p.name for p in importlib.resources.files('automl')\n"
        "                      .joinpath('templates').iterdir() if p.name.endswith('.j2'))}))\n"
    )
    # The wheel's copy comes first on the path, ahead of the editable install of this checkout.
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["automl"].startswith(str(site)) and found["plugins"].startswith(str(site))
    assert found["tricks"]["warmup"] == "automl_plugins.warmup"
    assert {"warmup", "cosine", "label_smoothing"} <= set(found["tricks"])
    assert found["failures"] == []
    assert found["report_template"]  # automl report's Jinja template ships in the wheel
    assert found["trick_templates"] == ["test_trick.py.j2", "trick.py.j2"]  # and automl new-trick's
    # automl's migrations travel inside the wheel, and `automl db upgrade` runs them from there.
    assert found["migrations"] == str(site / "automl" / "_migrations") and found["head"] == "v5_retry_claims"
    url = f"sqlite:///{tmp_path / 'wheel.db'}"
    result = subprocess.run([sys.executable, "-m", "automl", "db", "upgrade", "--storage", url],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"automl tables in {url}: (none) -> v5_retry_claims\n"
