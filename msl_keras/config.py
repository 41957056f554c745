"""Run configuration: a frozen dataclass tree with the paper's presets.

A `Config` holds four parts: `data` (which dataset, split or fold, how frames are chosen),
`cnn` (the VGG-16 trunk and the two feature heads, trained on frames), `lstm` (the
MS-LSTM and its loss) and `eval`. `PRESETS` holds every named setting of the project: the
paper's (`paper_ucf101`, `paper_jhmdb`, `paper_ut_interaction`), a small CPU one (`demo`),
and the demo at the sizes the experiments (`cpu_real`, `tiny`) and benchmarks
(`bench_paper`, `bench_cpu`, `bench_tiny`) run; `msl-keras config --presets` lists them.
Any field can be overridden with dotted keys, from the command line or from a JSON/YAML
file:

```python
config = get_preset("paper_jhmdb")
config = apply_overrides(config, {"lstm.loss": "ce", "data.split": 2})
config = load_config("my_run.yaml")  # {"preset": "demo", "lstm": {"epochs": 5}}
```

An unknown key raises `ConfigError` naming the valid ones.
"""

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Optional

from msl_keras.errors import ConfigError

DATASETS = ("generated", "ucf101", "jhmdb", "ut_interaction", "imported")
FRAME_SELECTIONS = ("first", "uniform")
MODEL_SELECTIONS = ("holdout", "refit")
CAM_CLASSES = ("predicted", "top_k", "oracle")
CAM_NORMALIZATIONS = ("max", None)
HEAD_SELECTIONS = ("val_loss", "val_accuracy")
WEIGHT_DECAY_MODES = ("l2", "decoupled")
LSTM_MODELS = ("ms_lstm", "context", "action")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
CHECKPOINTS = ("every_epoch", "end_of_fit")
# Keras policies "float32", "mixed_bfloat16", "mixed_float16" (models/precision.py).
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which clips, and which frames of them, feed the models.

    Args:
        dataset: one of `DATASETS`.
        root: the dataset's folder as downloaded (for "generated": where the clips are
            written; for "imported": the features, a .npz, .h5 or folder of .npy, see
            `msl_keras.data.imported`).
        lists_dir: the folder of official split lists when it is not inside `root`.
        split: the official split (1-3) of UCF-101 and JHMDB-21 ("imported": k of the
            input's `split<k>`).
        ut_set: UT-Interaction set (1 or 2), or None for both (the paper's Table 2:
            20 folds, the `paper_ut_interaction` preset).
        ut_test_sequence: the held-out sequence of a leave-one-sequence-out fold
            (1-10 in set 1, 11-20 in set 2); None runs every fold of the set(s).
        num_steps: T, the most frames per clip fed to the LSTM (the paper: 50).
        frame_selection: "first" (the first T frames: UCF-101's "latest" in the paper)
            or "uniform" (T frames spread over the observed part; with
            `observed_ratio=1` the whole clip, so that observing a ratio r of a clip
            longer than T reads step round(r * T), or one more: the UT-Interaction and
            JHMDB presets, whose earliest point is a ratio of the clip).
        observed_ratio: the observed part of each clip for frame selection; `evaluate`
            refuses a value below 1 (its "latest" would not be the whole clip).
        validation_fraction: share of training groups held out for model selection.
        model_selection: how the validation clips pick the model, for the CNN heads and
            the LSTM alike: "holdout" trains on the training clips minus the validation
            ones and keeps the epoch that scores best on validation; "refit" does that
            to choose the number of epochs, then trains again from the same seed on ALL
            training clips (train + validation) for exactly that many epochs. Neither
            looks at the test clips.
        generated_clips_per_class, generated_groups, generated_seed: the generated
            clips written into `root` when it is empty ("generated" dataset only).
    """

    dataset: str = "generated"
    root: str = "data/generated"
    lists_dir: Optional[str] = None
    split: int = 1
    ut_set: Optional[int] = 1
    ut_test_sequence: Optional[int] = 1
    num_steps: int = 50
    frame_selection: str = "first"
    observed_ratio: float = 1.0
    validation_fraction: float = 0.1
    model_selection: str = "holdout"
    generated_clips_per_class: int = 24
    generated_groups: int = 6
    generated_seed: int = 0


@dataclasses.dataclass(frozen=True)
class CNNConfig:
    """The VGG-16 trunk and the context- and action-aware heads (paper Sec. 3.1, 4.2).

    Args:
        input_size: network input height = width (the paper: 224).
        width: filter-count factor of the trunk and heads (1.0 = VGG-16).
        fc_units: size of fc6 and fc7, i.e. of the stored features (the paper: 4096).
        cam_filters: filters of the CAM branch's convolution (the paper: 1024).
        weights: trunk initialisation: "imagenet", a path to Keras' VGG-16 no-top
            weights file, or None (random). The heads' conv5_3 starts from it too.
        top_weights: where the heads' conv5_3, fc6 and fc7 start from (VGG-16's
            block5_conv3, fc1, fc2, each where the shapes match: fc6 needs
            input_size 224 and fc_units 4096): "auto" (Keras' with-top ImageNet file
            when weights="imagenet", `weights` itself when it holds fc1 / fc2, else
            fc6 / fc7 start random), "imagenet", a path to a with-top file, or None
            (fc6 / fc7 random). What each layer started from is in `cnn_info.json`.
        cam_class: the class whose CAM masks the action stream at extraction:
            "predicted" (default), "top_k" or "oracle" (the label: leaks at test time).
        top_k: classes summed for `cam_class="top_k"`.
        frames_per_clip: frames sampled from each training clip to train the heads.
        augment_views: augmented copies of each sampled frame; the frozen trunk's output
            is computed once per copy and reused for every epoch (and fold).
        augment: apply the paper's augmentation (flip, rotation, crop, colour).
        epochs, batch_size, learning_rate, momentum, weight_decay: SGD settings.
        weight_decay_mode: "l2" (Caffe's reading: `wd * w` added to the gradient,
            inside momentum) or "decoupled" (Keras' `w -= lr * wd * w`), see
            `msl_keras.weight_decay`; biases are not decayed.
        cam_normalization: the action head's mask, "max" (`ReLU(M_k) / max ReLU(M_k)`
            per frame) or None (`ReLU(M_k)` as printed in Eq. 3; `=none` on the
            command line), see `ActionAwareHead`.
        selection: which validation number picks each head's epoch: "val_loss"
            (lowest validation loss, the default) or "val_accuracy" (highest per-frame
            validation accuracy of the head's classifier, the first such epoch). On the
            real UT clips the validation loss of one held-out sequence (48 frames) is
            often lowest at epoch 1-2, keeping heads at ~20% training accuracy
            (RESULTS.md, Table 2 at 112 px).
        store_dtype: feature store precision, "float16" or "float32".
        compute_dtype: the precision the trunk and heads compute in, for head
            training and extraction: "float32", "bfloat16" or "float16" (Keras'
            mixed policies: weights stay float32; the store records it, and the LSTM
            stages refuse a store made in another one). bfloat16 extracts ~1.9x
            faster on a CPU with AVX512-BF16 (RESULTS.md: its accuracy).
        extract_from_cache: extraction reads the frozen trunk's conv5_2 maps of each
            frame from the run's trunk cache (computing and adding the missing ones),
            so the folds of a protocol that share clips run the trunk once per frame;
            the heads see the float16 maps they were trained on. One process at a
            time (the cache is one HDF5 file): keep False for sharded extraction.
        frozen_conv5_3: the frozen trunk ends at conv5_3 (from the weights file) and
            both heads start after it, sharing it, instead of each fine-tuning its own
            conv5_3 (the paper). The cache then holds conv5_3 maps and the heads train
            only their fc and CAM layers: ~10x less compute per epoch.
        scale_head_inputs: the heads multiply their input maps by 1 / RMS of the
            fold's training maps (fixed before training, saved with the heads), so the
            randomly initialised fc6 and CAM layers see values of order 1.
    """

    input_size: int = 224
    width: float = 1.0
    fc_units: int = 4096
    cam_filters: int = 1024
    weights: Optional[str] = "imagenet"
    top_weights: Optional[str] = "auto"
    cam_class: str = "predicted"
    top_k: int = 3
    frames_per_clip: int = 10
    augment_views: int = 2
    augment: bool = True
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0005
    weight_decay_mode: str = "l2"
    cam_normalization: Optional[str] = "max"
    selection: str = "val_loss"
    dropout: float = 0.5
    store_dtype: str = "float16"
    compute_dtype: str = "float32"
    extract_from_cache: bool = False
    frozen_conv5_3: bool = False
    scale_head_inputs: bool = False


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    """The multi-stage LSTM (paper Sec. 3.2) and its training.

    Args:
        model: "ms_lstm" (both stages), "context" or "action" (one stream, Table 4).
        units: LSTM hidden units (the paper: 2048).
        dropout: dropout after each LSTM (not stated in the paper; the authors' code
            uses 0.5).
        loss: a name `msl_keras.losses.get_loss` knows ("anticipation", "ce", ...; the
            original code's "original_*" from `msl_keras.original.losses`).
        epochs, batch_size, learning_rate, momentum: SGD settings (the paper: lr 0.001,
            momentum 0.9, batch 32).
        weight_decay: weight decay factor (not stated for the LSTM; 0 by default).
        weight_decay_mode: "l2" or "decoupled", as `CNNConfig.weight_decay_mode`.
        compute_dtype: the precision the LSTMs compute in, "float32", "bfloat16" or
            "float16" (weights stay float32, softmax outputs float32; float16 trains
            with Keras' loss scaling).
    """

    model: str = "ms_lstm"
    units: int = 2048
    dropout: float = 0.5
    loss: str = "anticipation"
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    weight_decay_mode: str = "l2"
    compute_dtype: str = "float32"


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation: accuracy against frames observed, with and without pooling.

    Args:
        top_k: also report top-k accuracy.
        ratios: observation ratios reported beside the per-step curve.
    """

    top_k: int = 5
    ratios: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one run needs; `run_name()` derives its directory from the settings.

    Args:
        name: a label for the run (the preset's name by default).
        data, cnn, lstm, eval: the parts described above.
        seed: seeds Python, NumPy, TensorFlow and Keras for a repeatable run.
        strategy: tf.distribute strategy for training: one of `STRATEGIES`.
        checkpoints: when `train_lstm` writes its models, one of `CHECKPOINTS`
            ("every_epoch": a resumable backup after each epoch; "end_of_fit": once).
        output_dir: where run directories are created.
    """

    name: str = "demo"
    data: DataConfig = DataConfig()
    cnn: CNNConfig = CNNConfig()
    lstm: LSTMConfig = LSTMConfig()
    eval: EvalConfig = EvalConfig()
    seed: int = 0
    strategy: str = "default"
    checkpoints: str = "every_epoch"
    output_dir: str = "runs"

    def __post_init__(self):
        _check_choice("data.dataset", self.data.dataset, DATASETS)
        _check_choice("data.frame_selection", self.data.frame_selection, FRAME_SELECTIONS)
        _check_choice("data.model_selection", self.data.model_selection, MODEL_SELECTIONS)
        _check_choice("cnn.cam_class", self.cnn.cam_class, CAM_CLASSES)
        _check_choice("lstm.model", self.lstm.model, LSTM_MODELS)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("checkpoints", self.checkpoints, CHECKPOINTS)
        _check_choice(
            "cnn.weight_decay_mode", self.cnn.weight_decay_mode, WEIGHT_DECAY_MODES
        )
        _check_choice(
            "lstm.weight_decay_mode", self.lstm.weight_decay_mode, WEIGHT_DECAY_MODES
        )
        _check_choice(
            "cnn.cam_normalization", self.cnn.cam_normalization, CAM_NORMALIZATIONS
        )
        _check_choice("cnn.selection", self.cnn.selection, HEAD_SELECTIONS)
        _check_choice("cnn.store_dtype", self.cnn.store_dtype, ("float16", "float32"))
        _check_choice("cnn.compute_dtype", self.cnn.compute_dtype, COMPUTE_DTYPES)
        _check_choice("lstm.compute_dtype", self.lstm.compute_dtype, COMPUTE_DTYPES)
        if not 0.0 < self.data.observed_ratio <= 1.0:
            raise ConfigError(
                "data.observed_ratio must be in (0, 1]. "
                f"Received: data.observed_ratio={self.data.observed_ratio}"
            )
        for key, value in (
            ("data.num_steps", self.data.num_steps),
            ("lstm.units", self.lstm.units),
            ("cnn.input_size", self.cnn.input_size),
        ):
            if value < 1:
                raise ConfigError(f"{key} must be positive. Received: {key}={value}")

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def fingerprint(self, *parts):
        """A short hash of the named parts (all settings by default)."""
        mapping = self.to_dict()
        if parts:
            mapping = {part: mapping[part] for part in parts}
        text = json.dumps(mapping, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    def run_name(self):
        """The run directory's name: the settings that make the features.

        The CNN heads and feature stores depend on `data`, `cnn` and `seed` only, so
        LSTMs trained with other losses or sizes share one run directory (and its
        features); each LSTM gets a subdirectory named by `lstm_run_name()`.
        """
        data = self.data
        if data.dataset != "ut_interaction":
            where = f"split{data.split}"
        else:
            where = "sets1-2" if data.ut_set is None else f"set{data.ut_set}"
        parts = [
            self.name,
            data.dataset,
            where,
            f"T{data.num_steps}",
            data.frame_selection,
            f"seed{self.seed}",
            self.fingerprint("data", "cnn", "seed"),
        ]
        return "_".join(str(p) for p in parts)

    def lstm_run_name(self):
        """The LSTM subdirectory's name, from the `lstm`, `eval` and `seed` settings.

        The seed draws the LSTM's initial weights and clip order, so LSTMs of two seeds
        never share a folder. The other settings (`data`, `cnn`) name the run directory
        above it; a stage bound to that directory with other ones finds them in the
        folder's `config.json` and refuses to resume (`train_lstm`).
        """
        lstm = self.lstm
        fingerprint = self.fingerprint("lstm", "eval", "seed")
        return f"{lstm.model}_{lstm.loss}_u{lstm.units}_seed{self.seed}_{fingerprint}"


def _check_choice(key, value, choices):
    if value not in choices:
        raise ConfigError(
            f"{key} must be one of {', '.join(map(repr, choices))}. Received: {key}={value!r}"
        )


def _paper(dataset, root, **data):
    # "refit": the paper trains on every training clip (9 UT-Interaction sequences per
    # fold), so the validation carve-out only picks the number of epochs.
    return Config(
        name=f"paper_{dataset}",
        data=DataConfig(dataset=dataset, root=root, model_selection="refit", **data),
        cnn=CNNConfig(),
        lstm=LSTMConfig(),
    )


def _demo():
    return Config(
        name="demo",
        data=DataConfig(
            dataset="generated",
            root="data/generated",
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
            batch_size=32,
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
        lstm=LSTMConfig(
            units=64, dropout=0.5, epochs=30, batch_size=16, learning_rate=0.002
        ),
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
    """The network's sizes as settings: the benchmarks' sizes (benchmarks/_common.py)."""
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


# The benchmarks' `--size` (benchmarks/_common.py): the demo preset's clips and training
# at the paper's network (its sizes: 224x224, VGG-16, fc 4096, 2048 units, T 50), at
# half of it for a CPU, and at a few seconds for CI.
BENCH_PAPER = _network(224, 1.0, 4096, 1024, units=2048, steps=50, batch=32)
BENCH_CPU = _network(112, 0.5, 1024, 256, units=512, steps=50, batch=32)
BENCH_TINY = _network(32, 1 / 16, 32, 16, units=16, steps=8, batch=4)

# experiments/original_vs_ours.py: the demo's clips, heads and LSTM size, with the
# LSTM's step and epochs that script has always used.
ORIGINAL_VS_OURS = {"lstm.epochs": 40, "lstm.learning_rate": 0.05}


def _on(base, name, settings):
    """Preset `base` with `settings` (dotted keys) applied, named `name`."""
    return apply_overrides(get_preset(base), {"name": name, **settings})


# UCF-101 reads the first T frames (its earliest point is 2 frames, its latest "never
# more than the first T = 50 frames"); UT-Interaction and JHMDB-21 spread T frames over
# the whole clip, since their earliest point is a ratio of it (50%, 20%): with the first
# 50 frames, 76 of the 120 UT clips would read earliest and latest at the same step.
# The UT-Interaction preset runs both sets, 20 folds (Table 2).
# Each preset: (one line for `msl-keras config --presets`, the function that builds it).
PRESETS = {
    "paper_ucf101": (
        "the paper on UCF-101: first T=50 frames, VGG-16 from ImageNet",
        lambda: _paper("ucf101", "data/UCF-101", num_steps=50, frame_selection="first"),
    ),
    "paper_jhmdb": (
        "the paper on JHMDB-21: T=50 frames spread over each clip",
        lambda: _paper("jhmdb", "data/JHMDB", num_steps=50, frame_selection="uniform"),
    ),
    "paper_ut_interaction": (
        "the paper on UT-Interaction: both sets, 20 leave-one-sequence-out folds",
        lambda: _paper(
            "ut_interaction",
            "data/ut-interaction",
            num_steps=50,
            frame_selection="uniform",
            ut_set=None,
            ut_test_sequence=None,
        ),
    ),
    "imported": (
        "features made elsewhere (msl-keras import-features): only the LSTM stages run",
        lambda: Config(
            name="imported",
            data=DataConfig(dataset="imported", root="features.npz", num_steps=50),
        ),
    ),
    "demo": (
        "the generated clips, small enough for 2 CPU cores in minutes (msl-keras demo)",
        _demo,
    ),
    "cpu_real": (
        "demo sizes for a real dataset on 2 CPU cores (experiments --scale cpu)",
        lambda: _on("demo", "cpu_real", CPU_REAL),
    ),
    "tiny": (
        "seconds per stage, any dataset (experiments --scale tiny, the tests)",
        lambda: _on("demo", "tiny", TINY),
    ),
    "bench_paper": (
        "the demo at the paper's network sizes (benchmarks --size paper)",
        lambda: _on("demo", "bench_paper", BENCH_PAPER),
    ),
    "bench_cpu": (
        "the demo at half the paper's network (benchmarks --size cpu)",
        lambda: _on("demo", "bench_cpu", BENCH_CPU),
    ),
    "bench_tiny": (
        "the demo at a few seconds' network (benchmarks --size tiny)",
        lambda: _on("demo", "bench_tiny", BENCH_TINY),
    ),
    "original_vs_ours": (
        "the demo with experiments/original_vs_ours.py's LSTM step and epochs",
        lambda: _on("demo", "original_vs_ours", ORIGINAL_VS_OURS),
    ),
}


def get_preset(name):
    """Returns the preset `Config` called `name` (see `PRESETS`)."""
    if name not in PRESETS:
        raise ConfigError(
            f"Unknown preset '{name}'. Valid presets: {', '.join(sorted(PRESETS))}."
        )
    return PRESETS[name][1]()


def preset_descriptions():
    """`name: what it is` lines of every preset (`msl-keras config --presets`)."""
    width = max(map(len, PRESETS))
    return [f"{name:<{width}}  {text}" for name, (text, _) in PRESETS.items()]


def _field_types(cls):
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce(key, value, current):
    """Converts a command-line string to the type of the field's current value."""
    if not isinstance(value, str):
        if isinstance(current, tuple) and isinstance(value, list):
            return tuple(value)
        return value
    text = value.strip()
    if text.lower() in ("none", "null"):
        return None
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} takes true or false. Received: {key}={value!r}")
    if isinstance(current, tuple):
        return tuple(float(v) for v in text.strip("()[]").split(",") if v.strip())
    try:
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(eval_fraction(text))
    except ValueError:
        raise ConfigError(
            f"{key} must be a {'whole number' if isinstance(current, int) else 'number'}. "
            f"Received: {key}={value!r}"
        ) from None
    if current is None:
        # Optional fields: keep numbers as numbers.
        for cast in (int, float):
            try:
                return cast(text)
            except ValueError:
                pass
    return text


def eval_fraction(text):
    """Parses '0.0625' or '1/16' as a float."""
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


def apply_overrides(config, overrides):
    """Returns `config` with dotted-key overrides applied.

    Args:
        config: a `Config`.
        overrides: a mapping such as `{"lstm.units": 512, "seed": 3}` or a nested
            mapping `{"lstm": {"units": 512}}`; values may be strings from a command line.
    """
    flat = {}
    _flatten(overrides, "", flat)
    updates = {}
    for key, value in flat.items():
        part, _, field = key.partition(".")
        top = _field_types(Config)
        if part not in top:
            raise ConfigError(_unknown_key_message(key))
        if field:
            section = getattr(config, part)
            if not dataclasses.is_dataclass(section) or field not in _field_types(
                type(section)
            ):
                raise ConfigError(_unknown_key_message(key))
            current = getattr(section, field)
            updates.setdefault(part, {})[field] = _coerce(key, value, current)
        else:
            if dataclasses.is_dataclass(getattr(config, part)):
                raise ConfigError(
                    f"'{key}' is a section; set its fields, e.g. '{key}.<field>=...'. "
                    + _unknown_key_message(key, only_list=True)
                )
            updates[part] = _coerce(key, value, getattr(config, part))
    changes = {}
    for part, value in updates.items():
        if isinstance(value, dict):
            changes[part] = dataclasses.replace(getattr(config, part), **value)
        else:
            changes[part] = value
    return dataclasses.replace(config, **changes)


def _flatten(mapping, prefix, out):
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, name + ".", out)
        else:
            out[name] = value


def valid_keys():
    """Every settable dotted key, e.g. 'lstm.units'."""
    keys = []
    for name, field in _field_types(Config).items():
        default = getattr(Config(), name)
        if dataclasses.is_dataclass(default):
            keys.extend(f"{name}.{sub}" for sub in _field_types(type(default)))
        else:
            keys.append(name)
    return keys


def _unknown_key_message(key, only_list=False):
    text = f"Valid keys: {', '.join(valid_keys())}."
    return text if only_list else f"Unknown config key '{key}'. {text}"


def parse_override(text):
    """Parses one `key=value` command-line override."""
    if "=" not in text:
        raise ConfigError(f"Overrides look like 'lstm.units=512'. Received: {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value


def load_config(path=None, preset=None, overrides=()):
    """Builds a `Config` from a preset, then a JSON/YAML file, then `key=value` overrides.

    The file may name its own preset (`preset: paper_jhmdb`) and holds nested sections
    (`lstm: {units: 512}`) or dotted keys; a file written by `save_config` loads back
    to the same config.
    """
    mapping = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Config file not found: '{path}'.")
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            try:
                mapping = yaml.safe_load(text) or {}
            except yaml.YAMLError as error:
                raise ConfigError(f"'{path}' is not valid YAML: {error}") from None
        else:
            try:
                mapping = json.loads(text)
            except json.JSONDecodeError as error:
                raise ConfigError(f"'{path}' is not valid JSON: {error}") from None
        if not isinstance(mapping, dict):
            raise ConfigError(f"'{path}' must hold a mapping of config keys.")
        mapping = dict(mapping)
    file_preset = mapping.pop("preset", None)
    config = get_preset(preset or file_preset or "demo")
    config = apply_overrides(config, mapping)
    flat = dict(parse_override(item) for item in overrides)
    return apply_overrides(config, flat)


def save_config(config, path):
    """Writes the resolved config as JSON (loadable with `load_config`)."""
    Path(path).write_text(config.to_json() + "\n")


def config_from_dict(mapping):
    """Rebuilds a `Config` from `Config.to_dict()` output."""
    return apply_overrides(Config(), mapping)
