"""The figures in docs/ are the benchmarks' own: rendered from bench/*.json (bench/render.py)."""

from __future__ import annotations

import subprocess
import sys

from support.server import REPO


def test_the_docs_figures_are_rendered_from_the_benchmarks_json() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.render", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout


def test_every_rendered_block_is_known_and_filled() -> None:
    for doc in (REPO / "docs").glob("*.md"):
        text = doc.read_text()
        assert text.count("<!-- rendered: ") == text.count("<!-- end -->"), doc.name
        assert "<!-- rendered: bench -->\n<!-- end -->" not in text, doc.name  # an empty block


def test_the_readme_stays_short_and_points_to_every_doc() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) < 15_000
    for doc in (REPO / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in readme, doc.name
