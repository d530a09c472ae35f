"""How `make reproduce` keeps its runs: the executed notebooks published as HTML pages, never as notebooks."""

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from leeroo_lib.runs import MAX_STREAM_LINES, publish


def test_publish_writes_html_pages_with_long_printouts_cut(tmp_path):
    run_dir, docs = tmp_path / "run", tmp_path / "docs"
    run_dir.mkdir()
    printed = "".join(f"line {i}\n" for i in range(MAX_STREAM_LINES + 30))
    cell = new_code_cell("print('x')", outputs=[new_output("stream", name="stdout", text=printed)])
    nbformat.write(new_notebook(cells=[cell]), run_dir / "01_demo.ipynb")
    (page,) = publish(run_dir, docs)
    assert page == docs / "01_demo.html" and not list(docs.glob("*.ipynb"))
    html = page.read_text()
    assert f"line {MAX_STREAM_LINES + 29}" in html and "line 0\n" not in html
    assert "[... 30 lines left out]" in html
