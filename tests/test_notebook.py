"""docs/quickstart.ipynb runs from top to bottom on the real data, so that the notebook users start from cannot rot."""

from __future__ import annotations

import pytest
from support import ROOT

NOTEBOOK = ROOT / "docs" / "quickstart.ipynb"


@pytest.mark.slow
@pytest.mark.real_data
def test_the_quickstart_notebook_runs(real_data_dir, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    text = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "Run('runs/" in text and "Evaluated(test set: accuracy" in text and "integrated gradients" in text
    assert any("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))
    assert (tmp_path / "quickstart.onnx").exists() and (tmp_path / "quickstart.json").exists()
