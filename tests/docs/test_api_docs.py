"""The API reference builds from the docstrings with warnings as errors (``make
docs``): a docstring that names a parameter the signature lacks, or a page that
points at a name that moved, fails here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_api_reference_builds_strictly(tmp_path: Path) -> None:
    assert importlib.util.find_spec("mkdocstrings_handlers") is not None, (
        "mkdocs and mkdocstrings[python] are in the dev extra: pip install -e '.[dev]'"
    )
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    app_page = (tmp_path / "app" / "index.html").read_text()
    assert "signing_keys" in app_page and "max_result_bytes" in app_page  # docstrings went in
