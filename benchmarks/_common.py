"""Shared pieces of the benchmark scripts: sizes, timing, FLOP counts, result rows.

The scripts in this folder are plain scripts (no package): each one puts this folder on
`sys.path` and imports `_common`. Every measurement is a RATIO of two timings taken in
the same process, alternated repeat by repeat (A, B, A, B, ...), so that the load of a
noisy machine hits both sides; a row reports the median ratio with its min and max.
"""

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# ---------------------------------------------------------------------------------------
# Sizes: the network of the presets `bench_paper` (the paper's network), `bench_cpu`
# (what would take minutes per repeat on a 2-core CPU, shrunk) and `bench_tiny` (seconds,
# CI) of `msl_keras.config`, and how much work each measurement does.


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    image: int  # input frames are image x image
    width: float  # VGG-16 width factor
    fc_units: int  # fc6 / fc7 of both heads = feature sizes Dc = Da
    cam_filters: int
    num_classes: int
    units: int  # LSTM units
    steps: int  # T
    batch: int  # frames per CNN batch, clips per LSTM batch
    frames: int  # frames per extraction measurement (a multiple of batch)
    original_frames: int  # frames pushed through the original per-frame scheme
    eval_clips: int  # clips scored at every observed length
    source: tuple = (320, 240)  # (width, height) of decoded video frames
    repeats: int = 3

    @property
    def preset(self):
        return f"bench_{self.name}"


def _size(name, num_classes, frames, original_frames, eval_clips, **measurement):
    """The `Size` of preset `bench_<name>` with the measurement's own counts."""
    from msl_keras.config import get_preset

    config = get_preset(f"bench_{name}")
    cnn = config.cnn
    return Size(
        name, cnn.input_size, cnn.width, cnn.fc_units, cnn.cam_filters, num_classes,
        config.lstm.units, config.data.num_steps, cnn.batch_size, frames,
        original_frames, eval_clips, **measurement,
    )  # fmt: skip


SIZES = {
    "paper": _size("paper", 101, 32, 8, 8, repeats=5),
    "cpu": _size("cpu", 101, 32, 16, 32, repeats=5),
    "tiny": _size("tiny", 5, 8, 4, 4, source=(48, 40), repeats=2),
}


def parse_args(description, argv=None, extra=None):
    """`--size paper|cpu|tiny`, `--device cpu|gpu`, `--repeats N`, `--json PATH`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument(
        "--repeats", type=int, default=None, help="default: the size's repeats"
    )
    parser.add_argument("--json", default=None, help="also write the rows here")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    args.spec = SIZES[args.size]
    if args.repeats is None:
        args.repeats = args.spec.repeats
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1. Received: {args.repeats}")
    return args


def device_scope(device):
    """`tf.device` of the first CPU or GPU; the models are built and run inside it."""
    import tensorflow as tf

    if device == "gpu":
        if not tf.config.list_physical_devices("GPU"):
            raise SystemExit("--device gpu: TensorFlow sees no GPU on this machine.")
        return tf.device("/GPU:0")
    return tf.device("/CPU:0")


def sync(value):
    """Blocks until `value` (a tensor, or nested tensors) is computed: `.numpy()` on one
    element pulls it to the host, so a timing includes the device work."""
    import tensorflow as tf

    leaves = tf.nest.flatten(value)
    for leaf in leaves:
        if hasattr(leaf, "numpy"):
            leaf.numpy()
    return value


def clock():
    return time.perf_counter()


def alternate(functions, repeats, warmup=1):
    """Times each function `repeats` times, interleaved, after `warmup` untimed calls.

    Args:
        functions: dict `name -> callable()` (each call does one unit of work and
            blocks until it is done).

    Returns:
        dict `name -> [seconds per call]`, one entry per repeat.
    """
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return times


def ratios(numerators, denominators):
    """Per-repeat ratios `a[i] / b[i]`."""
    return [a / b for a, b in zip(numerators, denominators)]


def spread(values):
    """`(median, min, max)` of a list."""
    return statistics.median(values), min(values), max(values)


def fmt_spread(values, digits=2):
    median, low, high = spread(values)
    return f"{median:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def load():
    """1-minute load average (the machine's busy cores)."""
    return os.getloadavg()[0]


def cleanup():
    import keras

    keras.backend.clear_session()
    gc.collect()


def peak_rss_gib():
    """Peak resident memory of this process, GiB (`ru_maxrss` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# ---------------------------------------------------------------------------------------
# Result rows


@dataclasses.dataclass
class Row:
    """One line of the benchmark table.

    `values` are per-repeat measurements of `unit` (usually a ratio); `met` compares
    their median with the target (None: reported only).
    """

    key: str
    what: str
    against: str
    target: str
    values: list
    unit: str = "x"
    met: bool = None
    detail: str = ""
    size: str = ""
    load: float = 0.0
    digits: int = 2

    def measured(self):
        if not self.values:
            return "-"
        if len(self.values) == 1:
            return f"{self.values[0]:.{self.digits}f}{self.unit}"
        median, low, high = spread(self.values)
        d = self.digits
        return f"{median:.{d}f}{self.unit} [{low:.{d}f}, {high:.{d}f}]"

    def verdict(self):
        return {True: "yes", False: "NO", None: "reported"}[self.met]

    def __post_init__(self):
        self.values = [float(v) for v in self.values]
        self.met = None if self.met is None else bool(self.met)
        self.load = float(self.load)

    def to_dict(self):
        return dataclasses.asdict(self)


def at_least(values, bound):
    return spread(values)[0] >= bound


def at_most(values, bound):
    return spread(values)[0] <= bound


def print_rows(rows, file=None):
    """A plain-text table, one row per line plus its detail line."""
    file = file or sys.stdout
    for row in rows:
        print(
            f"[{row.key}] {row.what} | vs {row.against} | target {row.target} | "
            f"measured {row.measured()} | met: {row.verdict()} | size {row.size} | "
            f"load {row.load:.2f}",
            file=file,
        )
        if row.detail:
            print(f"    {row.detail}", file=file)
    file.flush()


def markdown_table(rows):
    lines = [
        "| # | what | measured against | target | measured: median [min, max] | met? "
        "| size | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.key} | {row.what} | {row.against} | {row.target} | "
            f"{row.measured()} | {row.verdict()} | {row.size} | {row.load:.1f} |"
        )
    return "\n".join(lines)


def lstm_features(spec, clips, seed=0):
    """Random features and labels of `clips` clips at `spec`: `{"context", "action"}`
    float32 `(clips, T, fc_units)` (ReLU-like, >= 0), labels `(clips,)`, lengths
    `(clips,)` in [T/2, T] with the padded steps zeroed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (clips, spec.steps, spec.fc_units)
    lengths = rng.integers(max(1, spec.steps // 2), spec.steps + 1, size=clips)
    valid = np.arange(spec.steps)[None, :] < lengths[:, None]
    features = {
        k: (np.maximum(rng.normal(size=shape), 0) * valid[..., None]).astype(np.float32)
        for k in ("context", "action")
    }
    labels = rng.integers(0, spec.num_classes, size=clips)
    return features, labels, lengths


def build_lstm(spec, seed=0):
    """A built `MultiStageLSTM` at `spec` (units, Dc = Da = fc_units)."""
    import keras

    from msl_keras.models.ms_lstm import MultiStageLSTM

    keras.utils.set_random_seed(seed)
    model = MultiStageLSTM(spec.num_classes, units=spec.units, dropout=0.5)
    dims = (None, None, spec.fc_units)
    model.build({"context": dims, "action": dims})
    return model


def markdown_details(rows):
    return "\n".join(f"- **{row.key}** {row.detail}" for row in rows if row.detail)


def finish(rows, args):
    """Prints the rows and writes them as JSON when `--json` is given."""
    print_rows(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_dict() for r in rows], f, indent=1)
    return rows


def machine_info():
    """CPU model, cores, memory, TF/Keras versions and load, for the report header."""
    import keras
    import tensorflow as tf

    model = platform.processor() or "unknown"
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        wanted = ("avx512f", "avx512_bf16", "amx_bf16", "avx2", "fma")
        have = [w for w in wanted if f" {w}" in text]
        flags = " ".join(have)
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {
        "cpu": model,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "gpus": gpus,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "load": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------------------------------
# Analytic FLOP counts (multiply-adds count 2): conv = 2 * H * W * k * k * Cin * Cout at
# the output resolution, dense = 2 * in * out. Pooling, ReLU and bias adds are left out
# (they are < 0.1% of VGG-16).

def conv_flops(h, w, k, cin, cout):
    return 2 * h * w * k * k * cin * cout


def dense_flops(units_in, units_out):
    return 2 * units_in * units_out


def vgg16_conv_layers(image, width, last="block5_conv3"):
    """[(name, flops)] of VGG-16's convolutions from conv1_1 to `last` (inclusive), from
    the package's table of VGG-16 (`msl_keras.models.vgg16_trunk.VGG16_BLOCKS`)."""
    from msl_keras.models.vgg16_trunk import VGG16_BLOCKS, scaled_filters

    layers, side, channels = [], image, 3
    for block, convs, filters in VGG16_BLOCKS:
        cout = scaled_filters(filters, width)
        for conv in range(1, convs + 1):
            name = f"block{block}_conv{conv}"
            layers.append((name, conv_flops(side, side, 3, channels, cout)))
            channels = cout
            if name == last:
                return layers
        side //= 2
    return layers


def head_layers(spec, kind):
    """[(name, flops)] of one frame through a head on conv5_2 maps (kind: context or
    action), including fc8 (softmax classifier)."""
    from msl_keras.models.vgg16_trunk import HEAD_CONVOLUTION, vgg16_filters

    side = spec.image // 16
    c = vgg16_filters(HEAD_CONVOLUTION, spec.width)
    flat = (side // 2) ** 2 * c
    fc, n = spec.fc_units, spec.num_classes
    layers = [vgg16_conv_layers(spec.image, spec.width, last=HEAD_CONVOLUTION)[-1]]
    if kind == "action":
        layers += [
            ("cam_conv", conv_flops(side, side, 3, c, spec.cam_filters)),
            ("cam_classifier", dense_flops(spec.cam_filters, n)),
            ("cam_map", 2 * side * side * spec.cam_filters),  # M_k = sum_l w_l f_l
        ]
    layers += [
        ("fc6", dense_flops(flat, fc)),
        ("fc7", dense_flops(fc, fc)),
        ("fc8", dense_flops(fc, n)),
    ]
    return layers


def total(layers):
    return sum(f for _, f in layers)


def flops_bare_vgg16(spec):
    """Keras' VGG-16 without top (conv1_1 .. conv5_3), one frame."""
    return total(vgg16_conv_layers(spec.image, spec.width, "block5_conv3"))


def flops_trunk(spec):
    """Our shared trunk (conv1_1 .. conv5_2), one frame."""
    return total(vgg16_conv_layers(spec.image, spec.width, "block5_conv2"))


def flops_two_stream(spec):
    """Trunk once + context head + action head, one frame."""
    return (
        flops_trunk(spec)
        + total(head_layers(spec, "context"))
        + total(head_layers(spec, "action"))
    )


def flops_original(spec):
    """The original per-frame scheme: two full VGG-16 conv stacks (conv1_1..conv5_3),
    the context fc6-fc8, the CAM conv + classifier, the action fc6-fc8."""
    conv = flops_bare_vgg16(spec)
    heads = total(head_layers(spec, "context")) + total(head_layers(spec, "action"))
    _, conv5_3 = vgg16_conv_layers(spec.image, spec.width)[-1]
    return 2 * conv + heads - 2 * conv5_3  # the heads' conv5_3 are already in `conv`


def flops_head_training(spec):
    """Forward + backward of both heads for one frame, trunk frozen.

    Each layer costs its forward f, f for the weight gradient and f for the input
    gradient, except the first layer (block5_conv3), whose input (the trunk output) needs
    no gradient: 3 * forward - conv5_3 per head.
    """
    out = 0
    for kind in ("context", "action"):
        layers = head_layers(spec, kind)
        out += 3 * total(layers) - layers[0][1]
    return out


def gflop(x):
    return x / 1e9


@contextlib.contextmanager
def quiet_keras():
    """Silences Keras' progress output and Python warnings in a block."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------------------------------
# Models and data at a size


def build_extractor(spec, seed=0, cam_class="predicted", cam_normalization="max"):
    """Our `TwoStreamFeatureExtractor` at `spec` (random weights: speed does not depend
    on their values); `cam_normalization=None` is the original code's unscaled mask."""
    import keras

    from msl_keras.models.feature_extractor import build_feature_extractor

    keras.utils.set_random_seed(seed)
    return build_feature_extractor(
        spec.num_classes,
        input_shape=(spec.image, spec.image, 3),
        width=spec.width,
        fc_units=spec.fc_units,
        cam_filters=spec.cam_filters,
        cam_class=cam_class,
        cam_normalization=cam_normalization,
    )


def video_frames(spec, count, seed=0):
    """uint8 RGB frames `(count, H, W, 3)` at the decoded-video size `spec.source`."""
    import numpy as np

    width, height = spec.source
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)


def network_frames(spec, count, seed=0):
    """Preprocessed float32 frames `(count, S, S, 3)` (the one preprocessing function)."""
    import numpy as np

    from msl_keras.data.preprocessing import preprocess_frames

    return np.asarray(preprocess_frames(video_frames(spec, count, seed), (spec.image,) * 2))


# ---------------------------------------------------------------------------------------
# The real stages on generated clips


def stage_setup(root, spec, clips_per_class=2, num_classes=3, frames=None, **overrides):
    """Generated clips under `root/data` and a `Config` at `spec` for the stages.

    Returns:
        `(config, index, run)`: the config (`spec.preset`, the demo at its sizes),
        the `DatasetIndex` from `prepare`, and the created `RunDirectory`.
    """
    from msl_keras.config import apply_overrides, get_preset
    from msl_keras.data.generated import generate_dataset
    from msl_keras.runs import RunDirectory
    from msl_keras.pipeline.dataset_index import prepare

    frames = spec.steps if frames is None else frames
    data = os.path.join(root, "data")
    generate_dataset(
        data,
        num_classes=num_classes,
        clips_per_class=clips_per_class,
        num_frames=frames,
        frame_size=spec.source,
        num_groups=max(2, min(3, clips_per_class)),
        seed=0,
    )
    settings = {
        "data.root": data,
        "data.validation_fraction": 0.0,
        "output_dir": os.path.join(root, "runs"),
    }
    settings.update(overrides)
    config = apply_overrides(get_preset(spec.preset), settings)
    index = prepare(config)
    return config, index, RunDirectory.create(config)
