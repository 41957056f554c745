"""The notebooks in notebooks/ run top to bottom (nbclient), so they never rot.

Each notebook is executed in a kernel running THIS interpreter (a kernel spec written to a
temporary folder and put first on JUPYTER_PATH), so it sees the msl_keras of the test run,
in whichever virtual environment runs the tests. The generated clips (a small set) and the runs go to
temporary folders through the MSL_KERAS_NOTEBOOK_DATA / MSL_KERAS_NOTEBOOK_RUNS variables
the notebooks read. The notebooks share one run folder, in file order, as a user running
them one after the other would: later ones reuse the trained heads and features. Committed
notebooks carry no outputs.
"""

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ("quickstart.ipynb", "cam_visualisation.ipynb", "loss_comparison.ipynb")
KERNEL_NAME = "msl-keras-test"


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """A kernel spec for this interpreter and small generated clips; env vars set."""
    from msl_keras.data.generated import generate_dataset

    base = tmp_path_factory.mktemp("notebooks")
    spec_dir = base / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                ],
                "display_name": "msl_keras tests",
                "language": "python",
            }
        )
    )
    data = generate_dataset(
        base / "generated",
        num_classes=4,
        clips_per_class=12,
        num_frames=24,
        frame_size=(64, 48),
        num_groups=6,
    )
    keys = ("JUPYTER_PATH", "MSL_KERAS_NOTEBOOK_DATA", "MSL_KERAS_NOTEBOOK_RUNS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(base / "jupyter")] + ([saved["JUPYTER_PATH"]] if saved["JUPYTER_PATH"] else [])
    )
    os.environ["MSL_KERAS_NOTEBOOK_DATA"] = str(data)
    os.environ["MSL_KERAS_NOTEBOOK_RUNS"] = str(base / "runs")
    yield base
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_no_outputs(name):
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{name} has outputs; strip them before committing "
                "(e.g. nbformat: set every code cell's outputs to [] and execution_count to None)"
            )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, notebook_env):
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("output_type") == "error"
    ]
    assert not errors
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert images, f"{name} displayed no figure"
