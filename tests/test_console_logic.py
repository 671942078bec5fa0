"""The console's front-end logic (colour classes and legend, alert order, filters and event
reduction, the vehicle index and its throttle, the language choice), tested with Node's own
test runner on the modules the page is built from (console/test/*.test.js)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from api.console import STATIC_DIR

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "console"
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs)")
def test_front_end_modules_pass_their_node_tests() -> None:
    assert NODE is not None
    tests = sorted(str(p.relative_to(CONSOLE)) for p in (CONSOLE / "test").glob("*.test.js"))
    assert tests
    # The modules import nothing from npm, so no node_modules is needed.
    result = subprocess.run(
        [NODE, "--test", *tests], cwd=CONSOLE, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout


def test_the_built_console_is_committed_with_its_assets() -> None:
    """The service serves the build without Node: every file the page and /docs load."""
    for name in (
        "index.html",
        "console.js",
        "console.css",
        "maplibre-gl-worker.mjs",
        "swagger/swagger-ui-bundle.js",
        "swagger/swagger-ui.css",
    ):
        assert (STATIC_DIR / name).stat().st_size > 0, name
    assert "<!--CONSOLE-CONFIG-->" in (STATIC_DIR / "index.html").read_text()


def test_the_lock_file_names_no_registry() -> None:
    lock = (CONSOLE / "package-lock.json").read_text()
    assert '"resolved"' not in lock
    assert '"integrity"' in lock
