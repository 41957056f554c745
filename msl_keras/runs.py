"""The run directory: where every stage of one configuration reads and writes.

A run directory is named by the settings that make the features (`Config.run_name()`:
data, cnn and seed), so LSTMs trained with other losses share its CNN heads and feature
stores; each LSTM gets a subdirectory named by `Config.lstm_run_name()` (its lstm, eval
and seed settings). A stage reuses what a folder holds only when the settings stored
beside it equal its own (`check_same_settings`): all but `PLACEMENT_KEYS` for an LSTM,
data, cnn and seed for the heads:

```
<output_dir>/<config.run_name()>/
  config.json                      the resolved config of the creator
  trunk_cache/                     frozen-trunk outputs shared by folds (pipeline/head_training.py)
  <fold>/cnn/context_head.keras, action_head.keras, history_context.csv, history_action.csv
  <fold>/features/<fold>.h5        FeatureStore of every clip of the fold
  <fold>/features/<fold>.shard-<i>-of-<n>.h5
  <fold>/lstm/<config.lstm_run_name()>/config.json, best.keras, state.json, ...
  <fold>/lstm/<...>/results/
```

Example:

>>> run = RunDirectory.create(get_preset("demo"))
>>> run.store_path("split1")
PosixPath('runs/demo_generated_split1_T32_first_seed0_1a2b3c4d/split1/features/split1.h5')
"""

import json
import os
from pathlib import Path

from msl_keras.config import Config, config_from_dict, save_config
from msl_keras.errors import ConfigError

CONFIG_FILENAME = "config.json"
# The parts of a config that decide what a run directory holds (see Config.run_name).
FEATURE_PARTS = ("data", "cnn", "seed")
# Where a run lives and how training is spread over devices: they do not change what a
# stage computes, so a resumed or reused stage may differ in them.
PLACEMENT_KEYS = ("name", "output_dir", "strategy")
_MISSING = "(missing)"


def fold_name(fold):
    """The name of a fold given as a string or as an object with a `.name` (a `Fold`)."""
    name = getattr(fold, "name", fold)
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or (os.sep in name)
    ):
        raise ConfigError(
            "A fold name must be a non-empty string usable as a folder name, such as "
            f"'split1' or 'set1_seq3'. Received: fold={fold!r}"
        )
    return name


class RunDirectory:
    """Paths of one run: `<config.output_dir>/<config.run_name()>`.

    Nothing is written by the constructor; `RunDirectory.create(config)` makes the folder
    and writes `config.json`, and `RunDirectory.open(path)` reopens one from its
    `config.json`.

    Args:
        config: the run's `Config`.
        root: the run folder; default `Path(config.output_dir) / config.run_name()`.

    Attributes:
        config: the `Config`.
        root: `pathlib.Path` of the run folder.
    """

    def __init__(self, config, root=None):
        if not isinstance(config, Config):
            raise ConfigError(
                f"RunDirectory needs a msl_keras.config.Config. Received: {type(config).__name__}"
            )
        self.config = config
        self.root = (
            Path(root)
            if root is not None
            else (Path(config.output_dir) / config.run_name())
        )

    def __repr__(self):
        return f"RunDirectory('{self.root}')"

    @property
    def config_path(self):
        return self.root / CONFIG_FILENAME

    @property
    def trunk_cache_dir(self):
        """`<root>/trunk_cache`: frozen-trunk outputs shared by every fold of the run."""
        return self.root / "trunk_cache"

    def fold_dir(self, fold):
        """`<root>/<fold>`; `fold` is a name or a `Fold`."""
        return self.root / fold_name(fold)

    def cnn_dir(self, fold):
        """`<root>/<fold>/cnn`: the two heads and their training histories."""
        return self.fold_dir(fold) / "cnn"

    def features_dir(self, fold):
        """`<root>/<fold>/features`: the fold's feature store (and its shards)."""
        return self.fold_dir(fold) / "features"

    def store_path(self, fold, shard=None):
        """The fold's feature store, or shard `shard=(i, n)` of it.

        Returns:
            `<root>/<fold>/features/<fold>.h5`, or `<fold>.shard-<i>-of-<n>.h5`.
        """
        name = fold_name(fold)
        if shard is None:
            return self.features_dir(name) / f"{name}.h5"
        index, count = check_shard(shard)
        return self.features_dir(name) / f"{name}.shard-{index}-of-{count}.h5"

    def lstm_dir(self, fold):
        """`<root>/<fold>/lstm/<config.lstm_run_name()>`: one LSTM's checkpoints and logs."""
        return self.fold_dir(fold) / "lstm" / self.config.lstm_run_name()

    def results_dir(self, fold):
        """`<lstm_dir>/results`: results.json, accuracy.csv, accuracy.png."""
        return self.lstm_dir(fold) / "results"

    @classmethod
    def create(cls, config, root=None):
        """Makes the run folder and writes `config.json` (first creator only).

        An existing folder is reused when its `config.json` has the same `data`, `cnn`
        and `seed` settings (the LSTM and eval parts may differ: each LSTM keeps its own
        config in its subdirectory).

        Raises:
            ConfigError: the folder exists and was made with other data/cnn/seed
                settings, or its `config.json` is unreadable.
        """
        run = cls(config, root)
        if run.config_path.is_file():
            check_same_settings(
                run.config_path,
                config,
                FEATURE_PARTS,
                what=f"Run directory '{run.root}'",
                remedy="Use another output_dir or name, or remove that folder.",
            )
        else:
            run.root.mkdir(parents=True, exist_ok=True)
            save_config(config, run.config_path)
        return run

    @classmethod
    def open(cls, path):
        """Reopens an existing run folder from its `config.json`.

        Raises:
            ConfigError: no readable `config.json` in `path`.
        """
        path = Path(path)
        config_path = path / CONFIG_FILENAME
        if not config_path.is_file():
            raise ConfigError(
                f"'{path}' is not a run directory: '{config_path}' not found. Pass the "
                "folder made by RunDirectory.create (or the CLI), "
                "'<output_dir>/<config.run_name()>'."
            )
        config = config_from_dict(_read_config_mapping(config_path))
        return cls(config, root=path)


def resolve_run(config, run=None):
    """The `RunDirectory` a stage writes to: `run` as given (a `RunDirectory` or a path to
    an existing one), or `RunDirectory.create(config)` when `run` is None."""
    if run is None:
        return RunDirectory.create(config)
    if isinstance(run, RunDirectory):
        # The same folder, bound to this config, so that its settings name the LSTM
        # folder (LSTMs with other losses share one run's heads and features). The
        # the pipeline steps check what they reuse themselves: the heads' settings (train_cnn), the
        # store's settings and trunk fingerprint, the LSTM folder's config.json.
        return run if run.config == config else RunDirectory(config, root=run.root)
    if isinstance(run, (str, os.PathLike)):
        path = Path(run)
        if (path / CONFIG_FILENAME).is_file():
            return RunDirectory(config, root=path)
        return RunDirectory.create(config, root=path)
    raise ConfigError(
        f"`run` must be None, a RunDirectory or a folder path. Received: {type(run).__name__}"
    )


def settings_differences(stored, config, parts=None):
    """The settings in which a stored config and `config` differ.

    Args:
        stored: a `Config.to_dict()` mapping as read back from a `config.json`.
        config: a `Config`.
        parts: the top-level parts compared (e.g. `FEATURE_PARTS`); default every part
            but `PLACEMENT_KEYS`.

    Returns:
        `[(dotted key, stored value, new value)]`, sorted by key; a key only one side
        has shows `"(missing)"` on the other.
    """
    ours = config.to_dict()
    if parts is None:
        parts = [part for part in ours if part not in PLACEMENT_KEYS]
    old, new = {}, {}
    for part in parts:
        _flatten_settings(stored.get(part, _MISSING), part, old)
        _flatten_settings(ours[part], part, new)
    return [
        (key, old.get(key, _MISSING), new.get(key, _MISSING))
        for key in sorted(set(old) | set(new))
        # through JSON, so a tuple equals the list config.json holds
        if json.dumps(old.get(key, _MISSING)) != json.dumps(new.get(key, _MISSING))
    ]


def check_same_settings(path, config, parts, what, remedy):
    """Raises unless the config stored in `path` equals `config` on `parts`.

    Args:
        path: a `config.json`.
        config: the `Config` a stage was called with.
        parts: top-level parts compared; None: all but `PLACEMENT_KEYS`.
        what: the folder or files that config made, for the message.
        remedy: how to proceed, for the message.

    Raises:
        ConfigError: naming each differing key as `key: stored -> new`.
    """
    differences = settings_differences(_read_config_mapping(path), config, parts)
    if differences:
        listing = "\n".join(f"  {key}: {old!r} -> {new!r}" for key, old, new in differences)
        raise ConfigError(
            f"{what} was made with other settings ('{path}'; stored -> asked for):\n"
            f"{listing}\n{remedy}"
        )


def _flatten_settings(value, prefix, out):
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten_settings(item, f"{prefix}.{key}", out)
    else:
        out[prefix] = value


def check_shard(shard):
    try:
        index, count = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ConfigError(
            f"A shard is a pair (index, count) such as (0, 4). Received: shard={shard!r}"
        ) from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(
            f"A shard (index, count) needs 0 <= index < count. Received: shard={shard!r}"
        )
    return index, count


def _read_config_mapping(path):
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"Cannot read run config '{path}': {error}") from None
    if not isinstance(mapping, dict):
        raise ConfigError(f"Run config '{path}' must hold a mapping.")
    return mapping
