"""No module of msl_keras/pipeline imports another: the steps share the library only."""

import ast
from pathlib import Path

import msl_keras.pipeline

PIPELINE = Path(msl_keras.pipeline.__file__).parent
PACKAGE = "msl_keras.pipeline"


def pipeline_imports(path):
    """`[(line, module)]` of every import of `msl_keras.pipeline` or one of its modules
    in the file at `path`, at module level or inside functions, absolute or relative."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from . import x`, `from .extraction import y`
                names = [f"{PACKAGE}.{node.module or ''}".rstrip(".")]
            elif node.module == "msl_keras":  # `from msl_keras import pipeline`
                names = [f"msl_keras.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        found += [
            (node.lineno, name)
            for name in names
            if name == PACKAGE or name.startswith(PACKAGE + ".")
        ]
    return found


def test_no_pipeline_module_imports_another():
    modules = sorted(p for p in PIPELINE.glob("*.py") if p.name != "__init__.py")
    assert len(modules) >= 7  # dataset_index, head_training, ..., feature_import
    offenders = [
        f"{path.name}:{line} imports {name}"
        for path in modules
        for line, name in pipeline_imports(path)
    ]
    assert not offenders, "\n".join(offenders)


def test_the_check_sees_every_form_of_import(tmp_path):
    source = tmp_path / "step.py"
    source.write_text(
        "import msl_keras.pipeline.extraction\n"
        "from msl_keras import pipeline\n"
        "from . import evaluation\n"
        "from msl_keras.runs import load_lstm\n"
        "def run():\n"
        "    from msl_keras.pipeline.head_training import train_cnn\n"
        "    from .lstm_training import train_lstm\n"
    )
    assert pipeline_imports(source) == [
        (1, "msl_keras.pipeline.extraction"),
        (2, "msl_keras.pipeline"),
        (3, "msl_keras.pipeline"),
        (6, "msl_keras.pipeline.head_training"),
        (7, "msl_keras.pipeline.lstm_training"),
    ]
