"""The figures in docs/ are the benchmarks' own, and the tables the code can state are the
code's: rendered by bench/render.py (`make docs`). The README stays short."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.server import REPO

from bench.render import first_sentence, modules_table


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
    assert len(readme.encode()) <= 8_192
    for doc in (REPO / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in readme, doc.name


def test_the_readme_keeps_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "\nmake serve   # creates .venv (serving's locked packages only), seeds var/chaos.db, serves " \
           "model/ on http://127.0.0.1:5000\n" in readme
    assert "\nmake test    # adds the test tools to .venv, creates .tools/, runs ruff, mypy and the whole " \
           "test suite\n" in readme


@pytest.mark.parametrize(
    ("docstring", "sentence"),
    [("One line.", "One line."), ("A first sentence, e.g. this one,\nwrapped. A second.", "A first "
     "sentence, e.g. this one, wrapped."), ("`chaos x`: what? More.", "`chaos x`: what?"),
     ("A summary\n\nThen. More.", "A summary"), ("Version 3.1 of it (schema.py). Then.",
                                                   "Version 3.1 of it (schema.py).")],
    ids=["one_line", "wrapped", "question", "paragraph", "dots_inside"])
def test_a_module_s_line_is_the_first_sentence_of_its_docstring(docstring: str, sentence: str) -> None:
    assert first_sentence(f'"""{docstring}"""\nimport os\n') == sentence


def test_the_module_table_walks_sub_folders_and_wants_a_docstring(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text('"""The sub-package."""\n')
    (package / "sub" / "deep.py").write_text('"""Deep | down. Not this."""\n')
    (package / "top.py").write_text('"""On top."""\n')
    assert modules_table(package).splitlines()[2:] == [
        "| `pkg/sub/__init__.py` | The sub-package. |", "| `pkg/sub/deep.py` | Deep \\| down. |",
        "| `pkg/top.py` | On top. |"]
    assert modules_table(package, order=["top", "sub"]).splitlines()[2:] == [  # the parts' order
        "| `pkg/top.py` | On top. |", "| `pkg/sub/__init__.py` | The sub-package. |",
        "| `pkg/sub/deep.py` | Deep \\| down. |"]
    (package / "bare.py").write_text("import os\n")
    with pytest.raises(ValueError, match=re.escape("pkg/bare.py has no docstring")):
        modules_table(package)
