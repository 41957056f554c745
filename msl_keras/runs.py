"""The run directory: where each step writes, and how the next one reads it back.

Named by the settings that make the features (`Config.run_name()`), so LSTMs trained
with other losses share its heads and feature stores. A stage reuses a folder only when
the settings stored beside it equal its own (`check_same_settings`):

```
<output_dir>/<config.run_name()>/
  config.json                      the resolved config of the creator
  trunk.weights.h5                 the random trunk, with cnn.weights=None
  trunk_cache/                     frozen-trunk outputs shared by folds (data/trunk_cache.py)
  <fold>/cnn/context_head.keras, action_head.keras, cnn_info.json, history_*.csv
  <fold>/features/<fold>.h5        FeatureStore of every clip of the fold
  <fold>/features/<fold>.shard-<i>-of-<n>.h5
  <fold>/lstm/<config.lstm_run_name()>/config.json, best.keras, training.json, refit/, ...
  <fold>/lstm/<...>/results/       results.json, accuracy.csv, accuracy.png
  <fold>/pruned.json               once scored, the fold's .keras files were deleted
```

What one step writes the next reads back here (`load_extractor`, `load_lstm`,
`read_fold_features`...), so no step of `msl_keras.pipeline` imports another.
"""

import json
import os
import warnings
from pathlib import Path

import keras

from msl_keras.config import Config, config_from_dict, flatten, save_config
from msl_keras.data.feature_store import (
    FeatureStore,
    check_compatible,
    check_streams,
    weights_fingerprint,
)
from msl_keras.errors import ConfigError, MslKerasError, WeightsError
from msl_keras.models.action_head import ActionAwareHead
from msl_keras.models.feature_extractor import TwoStreamFeatureExtractor
from msl_keras.models.ms_lstm import MultiStageLSTM, SingleStageLSTM, lstm_from_config
from msl_keras.models.precision import set_compute_dtype
from msl_keras.models.vgg16_trunk import VGG16Trunk
from msl_keras.seeding import set_seed

CONFIG_FILENAME = "config.json"
CONTEXT_HEAD_FILENAME = "context_head.keras"
ACTION_HEAD_FILENAME = "action_head.keras"
INFO_FILENAME = "cnn_info.json"
TRUNK_WEIGHTS_FILENAME = "trunk.weights.h5"
BEST_FILENAME = "best.keras"
LAST_FILENAME = "last.keras"
RECORD_FILENAME = "training.json"
REFIT_DIRNAME = "refit"
PRUNED_FILENAME = "pruned.json"
# The parts of a config that decide what a run directory holds (see Config.run_name).
FEATURE_PARTS = ("data", "cnn", "seed")
# Where a run lives and how training is spread over devices: they do not change what a
# stage computes, so a resumed or reused stage may differ in them.
PLACEMENT_KEYS = ("name", "output_dir", "strategy", "checkpoints", "reuse_models")
_MISSING = "(missing)"


def fold_name(fold):
    """The name of a fold given as a string or as an object with a `.name` (a `Fold`)."""
    name = getattr(fold, "name", fold)
    bad = not isinstance(name, str) or name in ("", ".", "..")
    if bad or "/" in name or os.sep in name:
        raise ConfigError(
            "A fold name must be a non-empty string usable as a folder name, such as "
            f"'split1' or 'set1_seq3'. Received: fold={fold!r}"
        )
    return name


class RunDirectory:
    """Paths of one run (the module's layout); `fold` is a name or a `Fold`."""

    def __init__(self, config, root=None):
        if not isinstance(config, Config):
            raise ConfigError(
                "RunDirectory needs a msl_keras.config.Config. "
                f"Received: {type(config).__name__}"
            )
        self.config = config
        default = Path(config.output_dir) / config.run_name()
        self.root = default if root is None else Path(root)
        self.config_path = self.root / CONFIG_FILENAME
        self.trunk_weights_path = self.root / TRUNK_WEIGHTS_FILENAME
        self.trunk_cache_dir = self.root / "trunk_cache"

    def __repr__(self):
        return f"RunDirectory('{self.root}')"

    def fold_dir(self, fold):
        return self.root / fold_name(fold)

    def cnn_dir(self, fold):
        return self.fold_dir(fold) / "cnn"

    def cnn_info_path(self, fold):
        """How `train_cnn` made the fold's heads."""
        return self.cnn_dir(fold) / INFO_FILENAME

    def read_cnn_info(self, fold):
        """The fold's `cnn_info.json` as a dict, or None when there is none."""
        return _read_json(self.cnn_info_path(fold))

    def store_path(self, fold, shard=None):
        """The fold's feature store, or shard `shard=(i, n)` of it."""
        name = fold_name(fold)
        suffix = "" if shard is None else ".shard-{}-of-{}".format(*check_shard(shard))
        return self.fold_dir(name) / "features" / f"{name}{suffix}.h5"

    def lstm_dir(self, fold):
        """One LSTM's checkpoints and logs, named by `config.lstm_run_name()`."""
        return self.fold_dir(fold) / "lstm" / self.config.lstm_run_name()

    def best_path(self, fold):
        """The LSTM `evaluate` scores and `predict` streams."""
        return self.lstm_dir(fold) / BEST_FILENAME

    def trained_folds(self):
        """Names of the folds with an `lstm/` folder, sorted."""
        return sorted(p.name for p in self.root.iterdir() if (p / "lstm").is_dir())

    def results_dir(self, fold):
        return self.lstm_dir(fold) / "results"

    @classmethod
    def create(cls, config, root=None):
        """Makes the run folder and its `config.json`, or reuses one whose `config.json`
        has the same `FEATURE_PARTS` (else `ConfigError`)."""
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
        """Reopens a run folder from its `config.json` (`ConfigError` without one)."""
        path = Path(path)
        config_path = path / CONFIG_FILENAME
        if not config_path.is_file():
            raise ConfigError(
                f"'{path}' is not a run directory: '{config_path}' not found. Pass the "
                "folder made by RunDirectory.create or the CLI."
            )
        return cls(config_from_dict(_read_config_mapping(config_path)), root=path)


def resolve_run(config, run=None):
    """The `RunDirectory` a stage writes to: `run` (a `RunDirectory` or a folder) bound to
    `config`, or `RunDirectory.create(config)` when `run` is None."""
    if run is None:
        return RunDirectory.create(config)
    if isinstance(run, RunDirectory):
        # bound to this config, which names the LSTM folder; each step checks reuse
        return run if run.config == config else RunDirectory(config, root=run.root)
    if isinstance(run, (str, os.PathLike)):
        path = Path(run)
        if (path / CONFIG_FILENAME).is_file():
            return RunDirectory(config, root=path)
        return RunDirectory.create(config, root=path)
    raise ConfigError(
        "`run` must be None, a RunDirectory or a folder path. "
        f"Received: {type(run).__name__}"
    )


def settings_differences(stored, config, parts=None):
    """`[(dotted key, stored value, new value)]`, sorted, where `stored` (a
    `config.json` mapping) and `config` differ on `parts` (default: all but
    `PLACEMENT_KEYS`); a key only one side has shows `"(missing)"` on the other."""
    ours = config.to_dict()
    if parts is None:
        parts = [part for part in ours if part not in PLACEMENT_KEYS]
    old = flatten({part: stored.get(part, _MISSING) for part in parts})
    new = flatten({part: ours[part] for part in parts})
    return [
        (key, old.get(key, _MISSING), new.get(key, _MISSING))
        for key in sorted(set(old) | set(new))
        # through JSON, so a tuple equals the list config.json holds
        if json.dumps(old.get(key, _MISSING)) != json.dumps(new.get(key, _MISSING))
    ]


def check_same_settings(path, config, parts, what, remedy):
    """`ConfigError` listing `settings_differences` unless there are none; `what`
    names what the stored config made, `remedy` how to proceed."""
    differences = settings_differences(_read_config_mapping(path), config, parts)
    if differences:
        listing = "\n".join(f"  {key}: {old!r} -> {new!r}" for key, old, new in differences)
        raise ConfigError(
            f"{what} was made with other settings ('{path}'; stored -> asked for):\n"
            f"{listing}\n{remedy}"
        )


def check_shard(shard):
    """`(I, N)` of a pair or of the text "I/N" (`--shard`), 0 <= I < N."""
    message = f"A shard is a pair (I, N) or I/N with 0 <= I < N. Received: {shard=}"
    parts = shard.split("/") if isinstance(shard, str) else shard
    try:
        index, count = (int(v) for v in parts)
    except (TypeError, ValueError):
        raise ConfigError(message) from None
    if not 0 <= index < count:
        raise ConfigError(message)
    return index, count


def _read_json(path):
    return json.loads(path.read_text()) if path.is_file() else None


def _read_config_mapping(path):
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"Cannot read run config '{path}': {error}") from None
    if not isinstance(mapping, dict):
        raise ConfigError(f"Run config '{path}' must hold a mapping.")
    return mapping


def build_trunk(config, run=None):
    """The frozen `VGG16Trunk` of `config.cnn`, up to conv5_2 (paper Fig. 3) or conv5_3
    (`cnn.frozen_conv5_3`): `(batch, input_size / 16, input_size / 16, 512 * width)`.
    `cnn.weights=None`: the `run`'s `trunk.weights.h5`, else drawn from `config.seed`.
    """
    cnn = config.cnn
    size = int(cnn.input_size)
    if size % 16:
        raise MslKerasError(
            f"cnn.input_size must be divisible by 16 (VGG-16 pools 4 times before "
            f"conv5_2). Received: cnn.input_size={size}"
        )
    set_seed(config.seed)
    trunk = VGG16Trunk(
        input_shape=(size, size, 3),
        width=cnn.width,
        weights=cnn.weights,
        include_conv5_3=cnn.frozen_conv5_3,
    )
    trunk.trainable = False
    set_compute_dtype(trunk, cnn.compute_dtype)
    if cnn.weights is None and run is not None:
        path = resolve_run(config, run).trunk_weights_path
        if path.is_file():
            trunk.load_weights(path)
    return trunk


def load_heads(run, fold):
    """`(ContextAwareHead, ActionAwareHead)` of `train_cnn`; `WeightsError` without."""
    if not isinstance(run, RunDirectory):
        run = RunDirectory.open(run)
    cnn_dir = run.cnn_dir(fold)
    paths = [cnn_dir / CONTEXT_HEAD_FILENAME, cnn_dir / ACTION_HEAD_FILENAME]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise WeightsError(
            f"Trained heads not found: {', '.join(missing)}. Run the train-cnn stage for "
            f"fold '{getattr(fold, 'name', fold)}' first."
        )
    # An "oracle" head warns on rebuild.
    with warnings.catch_warnings():  # Python 3.10: no action= argument
        warnings.simplefilter("ignore", UserWarning)
        return tuple(keras.saving.load_model(path, compile=False) for path in paths)


def load_extractor(config, run, fold):
    """The `TwoStreamFeatureExtractor` of `fold`, its action head rebuilt with
    `config.cnn.cam_class` / `top_k`. `WeightsError`: no heads, or another trunk's."""
    run = resolve_run(config, run)
    context, action = load_heads(run, fold)
    trunk = build_trunk(config, run)
    cnn = config.cnn
    trained_on = (run.read_cnn_info(fold) or {}).get("trunk_fingerprint")
    found = weights_fingerprint(trunk) if trained_on else None
    if trained_on and trained_on != found:
        raise WeightsError(
            f"The heads in '{run.cnn_dir(fold)}' were trained on trunk {trained_on}, but "
            f"config.cnn (weights={cnn.weights!r}, input_size={cnn.input_size}, "
            f"width={cnn.width}) builds trunk {found}. Use the config of that run."
        )
    top_k = min(cnn.top_k, action.num_classes)
    if action.cam_class != cnn.cam_class or action.top_k != top_k:
        rebuilt = ActionAwareHead.from_config(
            {**action.get_config(), "cam_class": cnn.cam_class, "top_k": top_k}
        )
        rebuilt.build((None,) + tuple(trunk.output_shape[1:]))
        rebuilt.set_weights(action.get_weights())
        action = rebuilt
    extractor = TwoStreamFeatureExtractor(
        trunk, context, action, compute_dtype=cnn.compute_dtype
    )
    extractor.build((None,) + tuple(trunk.input_shape[1:]))
    return extractor


def load_lstm(path, compile=False):
    """The `MultiStageLSTM` or `SingleStageLSTM` in a `.keras` file or an LSTM folder
    (its `best.keras`); `compile` also restores the optimizer. `WeightsError`: none."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST_FILENAME
    if not path.is_file():
        raise WeightsError(
            f"No trained LSTM at '{path}'. Train one first (the train-lstm stage)."
        )
    try:
        model = keras.saving.load_model(path, compile=compile)
    except Exception as error:  # Keras reports a damaged zip as "File not found".
        raise WeightsError(
            f"Cannot load '{path}', damaged or not a `.keras` file "
            f"({type(error).__name__}: {error}). Delete it and train again "
            "(`train-lstm --no-resume`)."
        ) from error
    if not isinstance(model, (MultiStageLSTM, SingleStageLSTM)):
        raise WeightsError(
            f"'{path}' holds a {type(model).__name__}, not a MultiStageLSTM or "
            "SingleStageLSTM. Point to an LSTM checkpoint made by train_lstm."
        )
    return model


def training_record(lstm_dir):
    """How the LSTM folder's `best.keras` was chosen and trained, for `results.json`
    (`best_epoch` 1-based, `trained_on` clips per role, None where unknown)."""
    done = _read_json(Path(lstm_dir) / RECORD_FILENAME) or {}
    record = {
        "model_selection": done.get("model_selection"),
        "best_epoch": done.get("best_epoch"),
        "val_anticipation_accuracy": done.get("best"),
        "epochs_done": done.get("epochs_done"),
        "trained_on": done.get("trained_on"),
    }
    refit = _read_json(Path(lstm_dir) / REFIT_DIRNAME / RECORD_FILENAME)
    if refit is not None:
        keys = ("epochs", "epochs_done", "trained_on")
        record["refit"] = {key: refit.get(key) for key in keys}
    return record


def read_fold_features(config, index, fold, run, roles):
    """The fold's stored clips of each of `roles` (e.g. `("train", "test")`).

    Returns:
        `(settings, class_names, arrays, missing)`: the store's `StoreSettings` and class
        names, `{role: FeatureStore.read() of its stored clips in index order, or None}`
        and `{role: [clip ids not in the store]}` (extraction failed or has not run).

    Raises:
        FeatureStoreError: no store for the fold.
        FeatureStoreMismatchError: other settings than `config` and the `index`'s
            classes, or a single-stream store for a two-stream model.
    """
    fold = index.fold(fold)
    num_classes = len(index.class_names)
    data, cnn = config.data, config.cnn
    expected = {
        "dataset": data.dataset,
        "split": fold.name,
        "T": data.num_steps,
        "frame_selection": data.frame_selection,
        "observed_ratio": data.observed_ratio,
        "num_classes": num_classes,
    }
    if data.dataset != "imported":  # imported features keep their own CNN's settings
        top_k = f"top_k{min(cnn.top_k, num_classes)}"  # as extraction names it
        expected.update(
            cam_class=top_k if cnn.cam_class == "top_k" else cnn.cam_class,
            context_dim=cnn.fc_units,
            action_dim=cnn.fc_units,
            compute_dtype=cnn.compute_dtype,
        )
    arrays, missing = {}, {}
    with FeatureStore.open(run.store_path(fold.name)) as store:
        check_compatible(store, expected)
        # not built: no variables, but it knows the streams it reads
        check_streams(store, lstm_from_config(config.lstm, num_classes).input_streams)
        done = set(store.completed_ids())
        for role in roles:
            ids = [r.clip_id for r in fold.by_role(role)]
            present = [c for c in ids if c in done]
            missing[role] = [c for c in ids if c not in done]
            arrays[role] = store.read(present) if present else None
        return store.settings, list(store.class_names), arrays, missing


def open_trained_lstm(run_dir, fold=None, lstm=None, print_fn=print):
    """`(run, fold, lstm_dir)` of a trained LSTM of `run_dir`, `run` bound to the LSTM
    folder's `config.json`. `fold` defaults to the first trained one, `lstm` (a folder
    of `<fold>/lstm/`) to the first by name, noted to `print_fn` when there are several.
    `ConfigError`: no trained LSTM, or none called `lstm`."""
    run = RunDirectory.open(run_dir)
    if fold is None:
        trained = run.trained_folds()
        if not trained:
            raise ConfigError(
                f"Run '{run.root}' has no trained LSTM. Run the train-lstm stage first."
            )
        fold = trained[0]
    lstm_root = run.fold_dir(fold) / "lstm"
    best = lstm_root.glob(f"*/{BEST_FILENAME}")
    choices = sorted(p.parent.name for p in best if p.is_file())
    if lstm is None:
        if not choices:
            raise ConfigError(
                f"Fold '{fold}' of run '{run.root}' has no trained LSTM (no "
                f"{lstm_root}/*/{BEST_FILENAME}). Run the train-lstm stage first."
            )
        lstm = choices[0]
        if len(choices) > 1 and print_fn is not None:
            print_fn(
                f"using LSTM '{lstm}' (also here: {', '.join(choices[1:])}; pick one "
                "with --lstm NAME)"
            )
    elif lstm not in choices:
        raise ConfigError(
            f"No trained LSTM '{lstm}' in '{lstm_root}'. "
            f"Trained: {', '.join(choices) or 'none'}."
        )
    lstm_dir = lstm_root / lstm
    if (lstm_dir / CONFIG_FILENAME).is_file():
        run = RunDirectory(RunDirectory.open(lstm_dir).config, root=run.root)
    return run, fold, lstm_dir
