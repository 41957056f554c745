"""Run configuration: a frozen dataclass tree (`data`, `cnn`, `lstm`, `eval`) and
the named `PRESETS`; any field is overridden by its dotted key, e.g. `lstm.units=512`.
The options the paper leaves open: README.md, "Choices where the paper is silent".
"""

import contextlib
import dataclasses
import hashlib
import json
from operator import attrgetter
from pathlib import Path

from msl_keras.errors import ConfigError

FRAME_SELECTIONS = ("first", "uniform")
CAM_CLASSES = ("predicted", "top_k", "oracle")  # models.ActionAwareHead
CAM_NORMALIZATIONS = ("max", None)
WEIGHT_DECAY_MODES = ("l2", "decoupled")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
EXPORT_FORMATS = ("saved_model", "tflite")  # `msl-keras export --format`
# Keras policies "float32", "mixed_bfloat16", "mixed_float16" (models/precision.py).
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which clips, and which frames of them, feed the models."""

    dataset: str = "generated"
    root: str = "data/generated"  # as downloaded; "imported": the features file
    lists_dir: str | None = None  # the official split lists, when not in `root`
    split: int = 1  # UCF-101's and JHMDB-21's split (1-3); "imported": `split<k>`
    ut_set: int | None = 1  # UT-Interaction's set: 1, 2, or None for both
    ut_test_sequence: int | None = 1  # its held-out sequence; None: every fold
    num_steps: int = 50  # T, the most frames per clip fed to the LSTM
    frame_selection: str = "first"  # the first T frames, or "uniform" over the clip
    observed_ratio: float = 1.0  # the part of each clip frames are selected from
    validation_fraction: float = 0.1  # share of training groups held out
    model_selection: str = "holdout"  # or "refit" (README, "Model selection")
    # The clips written into `root` when it is empty ("generated" only).
    generated_clips_per_class: int = 24
    generated_groups: int = 6
    generated_seed: int = 0


@dataclasses.dataclass(frozen=True)
class CNNConfig:
    """The VGG-16 trunk and the two feature heads (paper Sec. 3.1, 4.2)."""

    input_size: int = 224  # height = width
    width: float = 1.0  # filter-count factor of the trunk and heads (1.0 = VGG-16)
    fc_units: int = 4096  # fc6 and fc7, i.e. the stored features
    cam_filters: int = 1024  # the CAM branch's convolution
    weights: str | None = "imagenet"  # or a Keras VGG-16 no-top file, None: random
    top_weights: str | None = "auto"  # README, "fc6 / fc7 of the heads"
    cam_class: str = "predicted"  # the CAM masking the action stream
    top_k: int = 3  # classes summed for cam_class="top_k"
    frames_per_clip: int = 10  # frames sampled from each training clip
    augment_views: int = 2  # augmented copies per frame, each through the trunk once
    augment: bool = True  # flip, rotation, crop, colour (paper Sec. 4.2)
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0005
    weight_decay_mode: str = "l2"  # or "decoupled": msl_keras/weight_decay.py
    cam_normalization: str | None = "max"  # or None (`=none`): ActionAwareHead
    selection: str = "val_loss"  # or "val_accuracy", "last": picks each head's epoch
    dropout: float = 0.5
    store_dtype: str = "float16"  # the feature store's precision
    compute_dtype: str = "float32"  # of the trunk and heads; weights stay float32
    extract_from_cache: bool = False  # one process at a time: not for sharding
    frozen_conv5_3: bool = False  # the frozen trunk ends at conv5_3, shared by heads
    scale_head_inputs: bool = False  # heads scale their input maps by 1 / RMS


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    """The multi-stage LSTM (paper Sec. 3.2) and its training."""

    model: str = "ms_lstm"  # both stages, or one stream: "context", "action" (Table 4)
    units: int = 2048
    dropout: float = 0.5  # after each LSTM (the authors' code; not in the paper)
    loss: str = "anticipation"  # a name `msl_keras.losses.get_loss` knows
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0  # not stated for the LSTM
    weight_decay_mode: str = "l2"
    compute_dtype: str = "float32"  # float16 trains with Keras' loss scaling


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation: accuracy against frames observed, with and without pooling."""

    top_k: int = 5  # also report top-k accuracy
    ratios: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # observed


# The settings with a fixed set of values, checked in this order.
_CHOICES = {
    "data.dataset": ("generated", "ucf101", "jhmdb", "ut_interaction", "imported"),
    "data.frame_selection": FRAME_SELECTIONS,
    "data.model_selection": ("holdout", "refit"),
    "cnn.cam_class": CAM_CLASSES,
    "lstm.model": ("ms_lstm", "context", "action"),
    "strategy": STRATEGIES,
    "checkpoints": ("every_epoch", "end_of_fit"),
    "cnn.weight_decay_mode": WEIGHT_DECAY_MODES,
    "lstm.weight_decay_mode": WEIGHT_DECAY_MODES,
    "cnn.cam_normalization": CAM_NORMALIZATIONS,
    "cnn.selection": ("val_loss", "val_accuracy", "last"),
    "cnn.store_dtype": ("float16", "float32"),
    "cnn.compute_dtype": COMPUTE_DTYPES,
    "lstm.compute_dtype": COMPUTE_DTYPES,
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one run needs; `run_name()` names its directory from the settings."""

    name: str = "demo"  # a label for the run (the preset's name)
    data: DataConfig = DataConfig()
    cnn: CNNConfig = CNNConfig()
    lstm: LSTMConfig = LSTMConfig()
    eval: EvalConfig = EvalConfig()
    seed: int = 0  # seeds Python, NumPy, TensorFlow and Keras
    strategy: str = "default"  # the tf.distribute strategy of training
    # When `train_lstm` writes its models: after each epoch (resumable) or "end_of_fit".
    checkpoints: str = "every_epoch"
    # Each LSTM built and traced once per process, reset to its fresh build every fold.
    reuse_models: bool = False
    output_dir: str = "runs"  # where run directories are created

    def __post_init__(self):
        for key, choices in _CHOICES.items():
            value = attrgetter(key)(self)
            if value not in choices:
                raise ConfigError(
                    f"{key} must be one of {', '.join(map(repr, choices))}. "
                    f"Received: {key}={value!r}"
                )
        if not 0.0 < (ratio := self.data.observed_ratio) <= 1.0:
            message = "data.observed_ratio must be in (0, 1]."
            raise ConfigError(f"{message} Received: data.observed_ratio={ratio}")
        for key in ("data.num_steps", "lstm.units", "cnn.input_size"):
            value = attrgetter(key)(self)
            if value < 1:
                raise ConfigError(f"{key} must be positive. Received: {key}={value}")

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def fingerprint(self, part, *parts):
        """A short hash of the settings of the named parts, e.g. `"lstm", "seed"`."""
        mapping = self.to_dict()
        text = json.dumps({p: mapping[p] for p in (part, *parts)}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    def run_name(self):
        """The run directory's name, from what makes the heads and features (`data`,
        `cnn`, `seed`): LSTMs of other losses or sizes share it."""
        data = self.data
        if data.dataset != "ut_interaction":
            where = f"split{data.split}"
        else:
            where = "sets1-2" if data.ut_set is None else f"set{data.ut_set}"
        fingerprint = self.fingerprint("data", "cnn", "seed")
        return (
            f"{self.name}_{data.dataset}_{where}_T{data.num_steps}_"
            f"{data.frame_selection}_seed{self.seed}_{fingerprint}"
        )

    def lstm_run_name(self):
        """The LSTM subdirectory's name, from `lstm`, `eval` and `seed` (which draws the
        LSTM's initial weights and clip order)."""
        lstm, fingerprint = self.lstm, self.fingerprint("lstm", "eval", "seed")
        return f"{lstm.model}_{lstm.loss}_u{lstm.units}_seed{self.seed}_{fingerprint}"


def _paper(dataset, root, **data):
    # "refit": the paper trains on every training clip (README, "Model selection").
    return Config(
        name=f"paper_{dataset}",
        data=DataConfig(dataset=dataset, root=root, model_selection="refit", **data),
    )


def _demo():
    return Config(  # named "demo", Config's default
        data=DataConfig(
            num_steps=32,
            validation_fraction=0.3,
            generated_clips_per_class=48,
            generated_groups=8,
        ),
        cnn=CNNConfig(
            input_size=64,
            width=1 / 8,
            fc_units=64,
            cam_filters=32,
            weights=None,
            frames_per_clip=16,
            augment_views=1,
            epochs=100,
            learning_rate=0.05,
            dropout=0.2,
            # The demo's measured behaviour (README): a random trunk, whose maps are
            # small enough for the unnormalised mask, and Keras' decoupled decay.
            weight_decay_mode="decoupled",
            cam_normalization=None,
        ),
        # Chosen on the validation clips: at lr 0.02 both losses peaked at epoch 1 and
        # then memorised the 72 training clips; at 0.002 with dropout 0.5 validation
        # loss falls for 40 epochs and validation accuracy peaks at epochs 3-14.
        lstm=LSTMConfig(units=64, epochs=30, batch_size=16, learning_rate=0.002),
        eval=EvalConfig(top_k=2),
    )


# The experiments' `--scale cpu` on a real dataset (experiments/common.py): small
# enough for 2 CPU cores. Chosen before any run, not tuned on test folds; the heads and
# the LSTM choose their epochs on validation clips.
CPU_REAL = {
    "data.num_steps": 16,
    "data.frame_selection": "uniform",
    "data.validation_fraction": 0.1,
    "cnn.input_size": 64,
    "cnn.width": 1.0,  # full width, so that a VGG-16-shaped weights file loads
    "cnn.fc_units": 256,
    "cnn.cam_filters": 128,
    "cnn.weights": None,
    "cnn.frames_per_clip": 8,
    "cnn.augment_views": 2,
    "cnn.epochs": 12,
    "cnn.batch_size": 32,
    "cnn.learning_rate": 0.01,
    "cnn.dropout": 0.5,
    # The faithful readings of the paper presets (the `demo` preset keeps its own).
    "cnn.weight_decay_mode": "l2",
    "cnn.cam_normalization": "max",
    "lstm.units": 128,
    "lstm.dropout": 0.3,
    "lstm.epochs": 60,
    "lstm.batch_size": 16,
    "lstm.learning_rate": 0.02,
    "eval.top_k": 3,
}

# Seconds per stage, for the tests (any dataset, e.g. 8-frame 32x24 clips). T frames
# spread over each clip, so that earliest and latest read different steps of the long
# real clips too (`evaluate` refuses them otherwise).
TINY = {
    "data.num_steps": 6,
    "data.frame_selection": "uniform",
    "cnn.input_size": 32,
    "cnn.width": 1 / 32,
    "cnn.fc_units": 8,
    "cnn.cam_filters": 4,
    "cnn.weights": None,
    "cnn.frames_per_clip": 3,
    "cnn.augment_views": 1,
    "cnn.epochs": 1,
    "cnn.batch_size": 8,
    "lstm.units": 8,
    "lstm.dropout": 0.0,
    "lstm.epochs": 2,
    "lstm.batch_size": 4,
    "eval.top_k": 2,
}


def _network(input_size, width, fc_units, cam_filters, units, steps, batch):
    """The network's sizes as settings (the benchmarks', benchmarks/_common.py)."""
    return {
        "data.num_steps": steps,
        "cnn.input_size": input_size,
        "cnn.width": width,
        "cnn.fc_units": fc_units,
        "cnn.cam_filters": cam_filters,
        "cnn.batch_size": batch,
        "lstm.units": units,
        "lstm.batch_size": batch,
    }


# experiments/original_vs_ours.py: the demo's clips, heads and LSTM size, with the
# LSTM's step and epochs that script has always used.
ORIGINAL_VS_OURS = {"lstm.epochs": 40, "lstm.learning_rate": 0.05}

# Every preset, with its line in `msl-keras config --presets`; the paper presets' frame
# selection: README.md, "Frames behind earliest and latest".
PRESETS = {
    "paper_ucf101": "the paper on UCF-101: first T=50 frames, VGG-16 from ImageNet",
    "paper_jhmdb": "the paper on JHMDB-21: T=50 frames spread over each clip",
    "paper_ut_interaction": (
        "the paper on UT-Interaction: both sets, 20 leave-one-sequence-out folds"
    ),
    "imported": "features made elsewhere (import-features): only the LSTM stages run",
    "demo": "the generated clips, minutes on 2 CPU cores (msl-keras demo)",
    "cpu_real": "demo sizes for a real dataset on 2 CPUs (experiments --scale cpu)",
    "tiny": "seconds per stage, any dataset (experiments --scale tiny, the tests)",
    "bench_paper": "the demo at the paper's network sizes (benchmarks --size paper)",
    "bench_cpu": "the demo at half the paper's network (benchmarks --size cpu)",
    "bench_tiny": "the demo at a few seconds' network (benchmarks --size tiny)",
    "original_vs_ours": "the demo with experiments/original_vs_ours.py's LSTM settings",
}

# How each preset is made: a function, or the settings it changes on `demo`.
_BUILDERS = {
    "paper_ucf101": lambda: _paper("ucf101", "data/UCF-101", frame_selection="first"),
    "paper_jhmdb": lambda: _paper("jhmdb", "data/JHMDB", frame_selection="uniform"),
    "paper_ut_interaction": lambda: _paper(
        "ut_interaction",
        "data/ut-interaction",
        frame_selection="uniform",
        ut_set=None,
        ut_test_sequence=None,
    ),
    "imported": lambda: Config(
        name="imported", data=DataConfig(dataset="imported", root="features.npz")
    ),
    "demo": _demo,
    "cpu_real": CPU_REAL,
    "tiny": TINY,
    "bench_paper": _network(224, 1.0, 4096, 1024, units=2048, steps=50, batch=32),
    "bench_cpu": _network(112, 0.5, 1024, 256, units=512, steps=50, batch=32),
    "bench_tiny": _network(32, 1 / 16, 32, 16, units=16, steps=8, batch=4),
    "original_vs_ours": ORIGINAL_VS_OURS,
}


def get_preset(name):
    """The preset `Config` called `name` (see `PRESETS`)."""
    if name not in PRESETS:
        valid = ", ".join(sorted(PRESETS))
        raise ConfigError(f"Unknown preset '{name}'. Valid presets: {valid}.")
    build = _BUILDERS[name]
    if callable(build):
        return build()
    return apply_overrides(_demo(), {"name": name, **build})


def _coerce(key, value, current):
    """Converts a command-line string to the type of the field's current value."""
    if not isinstance(value, str):
        from_list = isinstance(current, tuple) and isinstance(value, list)
        return tuple(value) if from_list else value
    text = value.strip()
    word = text.lower()
    if word in ("none", "null"):
        return None
    if isinstance(current, bool):
        if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ConfigError(f"{key} takes true or false. Received: {key}={value!r}")
        return word in ("1", "true", "yes", "on")
    if isinstance(current, tuple):
        return tuple(float(v) for v in text.strip("()[]").split(",") if v.strip())
    try:
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            num, slash, den = text.partition("/")  # '0.0625' or '1/16'
            return float(num) / float(den) if slash else float(num)
    except ValueError:
        kind = "whole number" if isinstance(current, int) else "number"
        error = ConfigError(f"{key} must be a {kind}. Received: {key}={value!r}")
        raise error from None
    if current is None:  # an optional field: numbers stay numbers
        for cast in (int, float):
            with contextlib.suppress(ValueError):
                return cast(text)
    return text


def flatten(mapping, prefix=""):
    """A nested mapping as `{dotted key: value}`, e.g. `{"lstm.units": 512}`."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def valid_keys():
    """Every settable dotted key, e.g. 'lstm.units'."""
    return list(flatten(Config().to_dict()))


def apply_overrides(config, overrides):
    """`config` with `overrides` applied: `{"lstm.units": 512, "seed": 3}` or nested,
    `{"lstm": {"units": 512}}`; values may be command-line strings."""
    keys = valid_keys()
    listed = f"Valid keys: {', '.join(keys)}."
    top, sections = {}, {}
    for key, value in flatten(overrides).items():
        part, _, field = key.partition(".")
        name = f"{part}.{field}" if field else part
        if name not in keys:
            if not field and any(k.startswith(f"{part}.") for k in keys):
                raise ConfigError(
                    f"'{key}' is a section; set its fields, e.g. '{key}.<field>=...'. "
                    + listed
                )
            raise ConfigError(f"Unknown config key '{key}'. {listed}")
        value = _coerce(key, value, attrgetter(name)(config))
        if field:
            sections.setdefault(part, {})[field] = value
        else:
            top[part] = value
    for part, fields in sections.items():
        top[part] = dataclasses.replace(getattr(config, part), **fields)
    return dataclasses.replace(config, **top)


def parse_override(text):
    """Parses one `key=value` command-line override."""
    if "=" not in text:
        raise ConfigError(f"Overrides look like 'lstm.units=512'. Received: {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value


def load_config(path=None, preset=None, overrides=()):
    """A `Config` from a preset, then a JSON/YAML file (nested sections or dotted keys,
    maybe its own `preset:`), then `key=value` overrides."""
    mapping = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Config file not found: '{path}'.")
        kind, load, errors = "JSON", json.loads, json.JSONDecodeError
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            kind, load, errors = "YAML", yaml.safe_load, yaml.YAMLError
        try:
            mapping = load(path.read_text())
        except errors as error:
            raise ConfigError(f"'{path}' is not valid {kind}: {error}") from None
        if kind == "YAML":
            mapping = mapping or {}  # an empty file
        if not isinstance(mapping, dict):
            raise ConfigError(f"'{path}' must hold a mapping of config keys.")
    file_preset = mapping.pop("preset", None)
    config = apply_overrides(get_preset(preset or file_preset or "demo"), mapping)
    return apply_overrides(config, dict(parse_override(item) for item in overrides))


def save_config(config, path):
    """Writes the resolved config as JSON (loadable with `load_config`)."""
    Path(path).write_text(config.to_json() + "\n")


def config_from_dict(mapping):
    """Rebuilds a `Config` from `Config.to_dict()` output."""
    return apply_overrides(Config(), mapping)
