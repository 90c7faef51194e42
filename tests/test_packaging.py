"""The wheel carries migrations/ and prompts/, so a non-editable install finds them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (found,) = out.glob("agent_orders-*.whl")
    return found


def test_wheel_contains_packages_and_resources(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    for name in migrations:
        assert f"agent_tools/_resources/migrations/{name}" in names
    for prompt in (ROOT / "prompts").glob("*.md"):
        assert f"agent_tools/_resources/prompts/{prompt.name}" in names
    for scenario in (ROOT / "agent_tools" / "eval" / "scenarios").glob("*.yaml"):
        assert f"agent_tools/eval/scenarios/{scenario.name}" in names
    assert "api/__init__.py" in names
    assert "api/templates/track_order.html" in names
    assert "api/static/style.css" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_wheel_finds_its_migrations_outside_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "from agent_tools.migrate import load_migrations, resource_dir;"
        "import agent_tools;"
        "print(agent_tools.__file__);"
        "print(resource_dir('migrations'));"
        "print(','.join(m.name for m in load_migrations()))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    module, resources, names = done.stdout.split("\n")[:3]
    assert module.startswith(str(site))
    assert resources.startswith(str(site))
    assert names.split(",") == sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
