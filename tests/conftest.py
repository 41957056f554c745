"""Shared fixtures: the real clips in ../shared/data and quiet, repeatable TensorFlow."""

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(
    os.environ.get("MSL_KERAS_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")
)


def pytest_collection_modifyitems(config, items):
    """Skip `slow` tests unless asked for with `-m slow` or MSL_KERAS_SLOW=1."""
    if os.environ.get("MSL_KERAS_SLOW") == "1" or "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or MSL_KERAS_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data (real UT-Interaction, UCF-101 and JHMDB files); skips if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed_everything():
    import keras

    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()
