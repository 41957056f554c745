"""How long, and how much disk, Table 2 takes at paper scale on one GPU; a guard that stops it.

`project(config, index, folds, methods, device)` estimates the seconds of each step of
`table2_paper_scale_gpu.py` ("setup", each fold, "probe") and the bytes it leaves on disk.
A step's seconds are the sum of

- GPU work counted from the config and the folds: frames through the trunk (VGG-16's
  FLOPs up to conv5_2, or conv5_3 with `cnn.frozen_conv5_3`, counted as
  `benchmarks/_common.py` counts them), the heads' training and extraction FLOPs, and the
  LSTMs' recurrent weights read at every step of every batch, divided by the device's
  ASSUMED sustained throughput and bandwidth (`DEVICES`);
- CPU-side costs a GPU does not remove, MEASURED on this project's machine (2 shared
  cores, `MEASURED`): writing a `.keras` checkpoint (per parameter; as many as
  `config.checkpoints` makes `train_lstm` write), decoding a frame,
  fingerprinting the extractor's weights per `extract` call, the probe's fits, and at
  paper size building each model and tracing each Keras function a fold calls
  (`python experiments/time_budget.py` measures them: `measure_builds_and_traces`);
- costs ASSUMED for a GPU machine (`ASSUMED`): the LSTMs' orthogonal initialisers (a
  QR) on the device instead of the CPU's, a Keras step's dispatch, the setup (and, with
  `HEADS_XLA`, the heads' XLA compiles taken as on the CPU).

`TimeBudget` prints each step's projection against its actual time and raises
`BudgetExceeded` before a step that would end past the budget; once a step has run, the
projections of the next ones are scaled by measured / projected so far (never down).
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _common as flops  # noqa: E402  (the benchmarks' analytic FLOP counts)

# Measured on this project's machine (AMD EPYC, 2 cores shared with other jobs, load
# average 3.5; RESULTS.md, "Table 2 at paper scale on one GPU"):
MEASURED = {
    # model.save of a compiled model with its SGD momenta (8 bytes per parameter):
    # the 117.5M-parameter MS-LSTM in 1.64 s (940 MB), the 50.4M single-stage LSTM in
    # 0.73 s (403 MB).
    "save_s_per_param": 1.4e-8,
    # cv2 decoding of the real UT-Interaction clips (567 frames of 5 clips).
    "decode_s_per_frame": 0.71e-3,
    # `extract`'s fixed cost per call at paper size (BENCHMARKS.md row 10a: hashing the
    # extractor's ~1 GB of weights for the store's settings).
    "extract_call_s": 1.54,
    # The probe's fits per fold at T = 16 (RESULTS.md: 18 s for 20 folds, features
    # cached); they grow with the training rows per clip (`ROW_STEPS` up to T).
    "probe_fit_s_per_fold_t16": 0.9,
    # `measure_builds_and_traces` at paper size, bfloat16, in CPU seconds of the process
    # (load average 14-20: the wall times were 5-20x more): building each model (with
    # its optimizer), one LSTM recurrent kernel's orthogonal initialiser (a QR), and
    # tracing each function (first call minus the second, batch 2). On a GPU an LSTM
    # traces cuDNN's fused kernel instead of the step loop traced here.
    "build_s": {"both heads": 2.09, "ms_lstm LSTM": 11.15, "context LSTM": 5.91},
    "orthogonal_s": 5.21,
    "trace_s": {
        "context head: train": 1.17, "context head: validation": 0.36,
        "action head: train": 2.35, "action head: validation": 0.28,
        "extract (cached maps)": 0.53,  # with the extractor's build
        "ms_lstm LSTM: train": 11.54, "ms_lstm LSTM: validation": 0.52,
        "ms_lstm LSTM: evaluate": 0.25,
        "context LSTM: train": 0.82, "context LSTM: validation": 0.08,
        # Not measured (the process was killed before it): taken as the MS-LSTM's.
        "context LSTM: evaluate": 0.25,
    },
    # The heads' functions with `jit_compile=True`: tracing and XLA's compile (CPU).
    "xla_s": {
        "context head: train": 2.15, "context head: validation": 0.91,
        "action head: train": 4.58, "action head: validation": 1.89,
    },
}  # fmt: skip
# Assumed for a GPU machine (not measured: no GPU was lent to this project).
ASSUMED = {
    # One LSTM recurrent kernel's orthogonal initialiser (a QR of 8192 x 2048, ~6e10
    # FLOPs) on the device.
    "orthogonal_gpu_s": 0.1,
    # Dispatch of one Keras training step.
    "step_s": 0.01,
    # Imports, the GPU's start, prepare() of the 120 clips.
    "setup_s": 30.0,
    # Share of the dense peak that VGG-16's convolutions and the fc layers sustain.
    "efficiency": 0.35,
    # `model.get_weights()` / `set_weights()` between GPU and host memory (PCIe).
    "host_copy_bytes_s": 10e9,
}
# `head_training` compiles the heads with `jit_compile=False`. Keras' default "auto" would
# be XLA on a GPU (`keras.src.trainers.trainer.Trainer._resolve_auto_jit_compile`), each
# fold's new heads compiled again; True projects that, at XLA's compile time on this CPU.
HEADS_XLA = False
# Dense tensor-core peaks (bfloat16 / float16; float32 runs as TF32, TensorFlow's default
# on these GPUs) and memory bandwidth, from the vendors' data sheets (SXM parts).
DEVICES = {
    "H100": {"peak_flops": {"bfloat16": 989e12, "float16": 989e12, "float32": 494e12},
             "bandwidth": 3.35e12},
    "H200": {"peak_flops": {"bfloat16": 989e12, "float16": 989e12, "float32": 494e12},
             "bandwidth": 4.8e12},
    "A100": {"peak_flops": {"bfloat16": 312e12, "float16": 312e12, "float32": 156e12},
             "bandwidth": 2.0e12},
    # This project's 2 cores (BENCHMARKS.md row 1: 321 GFLOP/s for the extractor in
    # float32; row 2b: bfloat16 1.8x faster), for the dry run's own projection.
    "CPU": {"peak_flops": {"bfloat16": 1.7e12, "float16": 0.9e12, "float32": 0.9e12},
            "bandwidth": 25e9},
}  # fmt: skip


class BudgetExceeded(RuntimeError):
    """The next step would end past the budget; the finished ones are kept."""

    def __init__(self, step, elapsed, projected, budget):
        self.step, self.elapsed, self.projected, self.budget = (
            step, elapsed, projected, budget
        )  # fmt: skip
        super().__init__(
            f"stopped before step '{step}': {elapsed:.0f} s elapsed + {projected:.0f} s "
            f"projected for it > the budget of {budget:.0f} s"
        )


def device_of(gpu_name):
    """The `DEVICES` key of a GPU's name ("NVIDIA H100 80GB HBM3" -> "H100"), or None."""
    for key in DEVICES:
        if key != "CPU" and key in (gpu_name or "").upper():
            return key
    return None


def _size(config, num_classes):
    """The benchmarks' `Size` of a config (what its FLOP counters read)."""
    cnn = config.cnn
    return flops.Size(
        "run", cnn.input_size, cnn.width, cnn.fc_units, cnn.cam_filters, num_classes,
        config.lstm.units, config.data.num_steps, cnn.batch_size, 0, 0, 0,
    )  # fmt: skip


def lstm_parameters(model, units, feature_dim, num_classes):
    """Parameters of the MS-LSTM ("ms_lstm": stage 1 on the context features, stage 2 on
    the action features and stage 1's output) or a one-stream LSTM; a Keras LSTM layer
    holds `4 U (D + U + 1)`."""

    def lstm(inputs):
        return 4 * units * (inputs + units + 1)

    classifier = units * num_classes + num_classes
    if model == "ms_lstm":
        return lstm(feature_dim) + lstm(feature_dim + units) + 2 * classifier
    return lstm(feature_dim) + classifier


def head_parameters(config, num_classes):
    """Parameters of one head (the action head's: with its CAM branch), trainable ones."""
    cnn = config.cnn
    channels = round(512 * cnn.width)
    side = cnn.input_size // 32
    fc = cnn.fc_units
    conv5_3 = 0 if cnn.frozen_conv5_3 else 9 * channels * channels + channels
    cam = 9 * channels * cnn.cam_filters + cnn.cam_filters + cnn.cam_filters * num_classes
    dense = side * side * channels * fc + fc + fc * fc + fc + fc * num_classes
    return conv5_3 + cam + dense


def gpu_build_s(model):
    """Seconds to build `model` (a `MEASURED["build_s"]` key) on a GPU machine: as on
    this CPU, less its LSTMs' orthogonal initialisers (a GPU runs those on the
    device)."""
    qrs = {"ms_lstm LSTM": 2, "context LSTM": 1}.get(model, 0)
    qr = MEASURED["orthogonal_s"] - ASSUMED["orthogonal_gpu_s"]
    return MEASURED["build_s"][model] - qrs * qr


def lstm_build_s(model):
    """`gpu_build_s` of an LSTM of `lstm.model` (the two one-stream ones are alike)."""
    return gpu_build_s("ms_lstm LSTM" if model == "ms_lstm" else "context LSTM")


def traces():
    """Seconds to trace each function a fold calls (`MEASURED["trace_s"]` keys, the
    LSTMs' by `lstm.model`), with the heads' XLA compiles while Keras turns XLA on for
    them (`HEADS_XLA`)."""
    trace = {k.replace(" LSTM", ""): v for k, v in MEASURED["trace_s"].items()}
    for what in ("train", "validation", "evaluate"):
        trace[f"action: {what}"] = trace[f"context: {what}"]
    trace["extract"] = trace.pop("extract (cached maps)")
    trace["trunk"] = trace["extract"]  # the trunk's function: assumed alike
    if HEADS_XLA:  # XLA's compile on a GPU: taken as on this CPU (not measured)
        trace.update(MEASURED["xla_s"])
    return trace


def load_s(methods, num_classes):
    """Seconds to build and load each LSTM row's best.keras (a finished, kept fold)."""
    total = 0.0
    for row in methods.values():
        lstm = row.lstm
        params = lstm_parameters(lstm.model, lstm.units, row.cnn.fc_units, num_classes)
        total += lstm_build_s(lstm.model) + params * MEASURED["save_s_per_param"]
    return total


def project(config, index, folds, methods, device="H100", dtype="bfloat16",
            keep_models=True):  # fmt: skip
    """`({step: seconds}, {step: {part: seconds}}, bytes on disk)` of the run.

    Args:
        config: the run's `Config` (the heads' and features' settings).
        index, folds: the `DatasetIndex` and the folds to run, in order.
        methods: `{row name: Config}` of the LSTM rows (each row's config).
        device: a `DEVICES` key.
        dtype: the compute dtype of the trunk, heads and LSTMs.
        keep_models: every fold's `.keras` files stay on disk; False: a fold's are
            deleted once it is scored (`orchestrator.prune_fold`).
    """
    spec = _size(config, index.num_classes)
    dev = DEVICES[device]
    rate = dev["peak_flops"][dtype] * ASSUMED["efficiency"]
    trunk_layer = "block5_conv3" if config.cnn.frozen_conv5_3 else "block5_conv2"
    trunk_flops = flops.total(flops.vgg16_conv_layers(spec.image, spec.width, trunk_layer))
    heads_forward = sum(
        flops.total(flops.head_layers(spec, kind)) for kind in ("context", "action")
    )
    if config.cnn.frozen_conv5_3:
        # The heads start after conv5_3: its forward and gradients are the trunk's.
        _, conv5_3 = flops.vgg16_conv_layers(spec.image, spec.width)[-1]
        heads_forward -= 2 * conv5_3
    heads_training = 3 * heads_forward
    frame_s = trunk_flops / rate + MEASURED["decode_s_per_frame"]
    save = MEASURED["save_s_per_param"]
    fits = 2 if config.data.model_selection == "refit" else 1
    steps_t = config.data.num_steps
    fpc, views = config.cnn.frames_per_clip, config.cnn.augment_views
    head_params = head_parameters(config, index.num_classes)

    seconds, parts, disk, peak_models = {"setup": ASSUMED["setup_s"]}, {}, 0, 0
    trace = traces()
    heads_setup = gpu_build_s("both heads") + sum(
        trace[f"{head} head: {what}"]
        for head in ("context", "action") for what in ("train", "validation")
    )  # fmt: skip
    parts["setup"] = {"imports, GPU start, prepare": ASSUMED["setup_s"]}
    cached_head, cached_frames, built_rows = set(), set(), set()
    for fold in folds:
        # The heads' frames: training and validation clips (holdout only scores the
        # latter: an upper bound).
        train = fold.by_role("train") + fold.by_role("validation")
        clips = fold.records
        new_head = [r for r in train if r.clip_id not in cached_head]
        cached_head.update(r.clip_id for r in train)
        if config.cnn.extract_from_cache:
            new_frames = [r for r in clips if r.clip_id not in cached_frames]
            cached_frames.update(r.clip_id for r in clips)
        else:
            new_frames = clips
        trunk_passes = len(new_head) * fpc * views + len(new_frames) * steps_t
        head_frames = len(train) * fpc * views
        head_steps = -(-head_frames // config.cnn.batch_size)
        part = {
            "trunk passes": trunk_passes * frame_s,
            "trunk: trace": trace["trunk"] if trunk_passes else 0.0,
            "heads: train": fits * config.cnn.epochs
            * (head_frames * heads_training / rate + head_steps * ASSUMED["step_s"]),
            "heads: build, trace, save": fits * heads_setup + 2 * head_params * save,
            "extract": MEASURED["extract_call_s"] + trace["extract"]
            + len(clips) * steps_t * heads_forward / rate,
        }  # fmt: skip
        # Saved models hold their optimizer's momenta: 8 bytes per parameter.
        models = 2 * head_params * 8
        disk += len(clips) * steps_t * 2 * config.cnn.fc_units * 2
        n_train = len(fold.by_role("train"))
        for row, row_config in methods.items():
            lstm = row_config.lstm
            batches = -(-n_train // lstm.batch_size)
            params = lstm_parameters(
                lstm.model, lstm.units, config.cnn.fc_units, index.num_classes
            )
            layers = 2 if lstm.model == "ms_lstm" else 1
            # Forward and backward read each layer's recurrent kernel at every step.
            recurrent = layers * 4 * lstm.units * lstm.units * 4
            step = 3 * steps_t * recurrent / dev["bandwidth"] + ASSUMED["step_s"]
            # `reuse_models`: each row's LSTM is built and traced in its first fit only.
            reused = row_config.reuse_models and row in built_rows
            builds = 0 if reused else 1 if row_config.reuse_models else fits
            built_rows.add(row)
            # A reused fit first copies the weights and momenta back from host memory.
            restores = fits - builds if row_config.reuse_models else 0
            part[f"{row}: train"] = (
                fits * lstm.epochs * batches * step
                + restores * 8 * params / ASSUMED["host_copy_bytes_s"]
                + builds * (
                    lstm_build_s(lstm.model) + trace[f"{lstm.model}: train"]
                    + trace[f"{lstm.model}: validation"]
                )
            )  # fmt: skip
            # What `train_lstm` writes (a file holds the weights and SGD momenta), with
            # a validation improvement at every epoch (an upper bound).
            write = params * save
            if row_config.checkpoints == "every_epoch":
                # Each epoch BackupAndRestore writes a backup and (from the second)
                # copies the one before, at the write rate, and ModelCheckpoint writes
                # best.keras; last.keras at the end: 3 files an epoch.
                writes, kept = 3 * lstm.epochs * write, 2
            else:
                # "end_of_fit": EarlyStopping copies the weights (4 bytes a parameter)
                # to host memory at each improvement and back once; one best.keras.
                copies = (lstm.epochs + 1) * 4 * params / ASSUMED["host_copy_bytes_s"]
                writes, kept = copies + write, 1
            part[f"{row}: checkpoints"] = fits * writes
            # `run_fold` scores the model in memory when it holds best.keras's
            # weights (`train_lstm(return_model=True)`), else builds and loads it.
            in_memory = fits == 2 or row_config.checkpoints == "end_of_fit"
            if in_memory:  # a reused model's predict function is traced once
                traced = 0.0 if reused else trace[f"{lstm.model}: evaluate"]
                part[f"{row}: evaluate"] = traced
            else:
                part[f"{row}: evaluate"] = (
                    trace[f"{lstm.model}: evaluate"] + lstm_build_s(lstm.model)
                    + params * save
                )  # fmt: skip
            models += fits * kept * params * 8
        seconds[fold.name] = sum(part.values())
        parts[fold.name] = part
        # Pruned (`orchestrator.prune_fold`), a fold's models are deleted once it is
        # scored: only the largest fold's are on disk at once.
        disk += models if keep_models else 0
        peak_models = max(peak_models, models)
    disk += 0 if keep_models else peak_models
    from probe_frozen_trunk import ROW_STEPS

    def rows(t):
        return sum(1 for s in ROW_STEPS if s <= t)

    probe_frames = len({r.clip_id for f in folds for r in f.records}) * steps_t
    probe_trunk = flops.total(flops.vgg16_conv_layers(spec.image, spec.width))
    parts["probe"] = {
        "trunk passes": probe_frames
        * (probe_trunk / rate + MEASURED["decode_s_per_frame"]),
        "fits": len(folds) * MEASURED["probe_fit_s_per_fold_t16"] * rows(steps_t) / rows(16),
    }
    seconds["probe"] = sum(parts["probe"].values())
    cache_side = spec.image // 16
    disk += (len(cached_head) * fpc * views + len(cached_frames) * steps_t) * (
        cache_side * cache_side * round(512 * spec.width) * 2
    )
    return seconds, parts, disk


class TimeBudget:
    """Steps run in order under a budget of `seconds`; `start(step)` before each.

    Args:
        seconds: the budget.
        projection: `{step: projected seconds}` (`project`).
        clock: the time source (seconds).
        begin: when the budget started (`clock()` by default).
    """

    def __init__(self, seconds, projection, clock=time.perf_counter, begin=None):
        self.seconds = float(seconds)
        self.projection = dict(projection)
        self.clock = clock
        self.begin = clock() if begin is None else begin
        self.rows = []  # {"step", "projected_s", "actual_s"}
        self._current = None

    def elapsed(self):
        return self.clock() - self.begin

    def scale(self):
        """Measured / projected over the steps run so far but "setup" (imports and the
        GPU's start say nothing of the folds), at least 1."""
        done = [r for r in self.rows if r["actual_s"] is not None and r["step"] != "setup"]
        projected = sum(r["model_s"] for r in done)
        actual = sum(r["actual_s"] for r in done)
        return max(1.0, actual / projected) if projected > 0 else 1.0

    def start(self, step, check=True):
        """Ends the running step and starts `step`, or raises `BudgetExceeded` (with
        `check`: a step that must run whatever the budget, e.g. the checks, passes False)."""
        self.finish()
        model = self.projection.get(step, 0.0)
        projected = model * self.scale()
        elapsed = self.elapsed()
        print(
            f"[budget] {step}: projected {projected:.0f} s; {elapsed:.0f} s of "
            f"{self.seconds:.0f} s used",
            flush=True,
        )
        if check and elapsed + projected > self.seconds:
            raise BudgetExceeded(step, elapsed, projected, self.seconds)
        self._current = {
            "step": step, "model_s": model, "projected_s": projected,
            "actual_s": None, "start": self.clock(),
        }  # fmt: skip
        self.rows.append(self._current)

    def finish(self):
        """Ends the running step, recording its actual time."""
        if self._current is None:
            return
        row = self._current
        row["actual_s"] = self.clock() - row.pop("start")
        print(
            f"[budget] {row['step']}: took {row['actual_s']:.0f} s (projected "
            f"{row['projected_s']:.0f} s)",
            flush=True,
        )
        self._current = None

    def report(self):
        """`[{"step", "model_s", "projected_s", "actual_s"}]`, rounded."""
        return [
            {k: (round(v, 1) if isinstance(v, float) else v) for k, v in row.items()}
            for row in self.rows
        ]


class _Timings(dict):
    """`{what: (wall s, CPU s)}`, each printed as it is measured."""

    def __setitem__(self, key, pair):
        print(f"  {key}: {pair[0]:.2f} s wall, {pair[1]:.2f} s CPU", flush=True)
        super().__setitem__(key, pair)


def _timed(call):
    """`(wall s, CPU s of this process)` of `call()`: on a shared machine the CPU time
    is what the call would take alone (tracing is one Python thread)."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def _trace(call):
    """`(wall s, CPU s)` of the first call minus the second: what tracing (and with
    XLA, compiling) the call's function costs."""
    first, steady = _timed(call), _timed(call)
    return first[0] - steady[0], first[1] - steady[1]


def _measure_heads(config, num_classes, maps, onehot, built, traced, xla):
    """The heads' and extractor's part of `measure_builds_and_traces`."""
    import keras

    from msl_keras.models.feature_extractor import TwoStreamFeatureExtractor
    from msl_keras.models.vgg16_trunk import VGG16Trunk
    from msl_keras.pipeline import head_training

    cnn = config.cnn
    heads = []
    built["both heads"] = _timed(lambda: heads.extend(
        head_training._build_heads(config, num_classes, maps.shape[1:])[:2]))
    context, action = heads
    targets = {"context": onehot, "action": {"cam": onehot, "action": onehot}}
    for name, head in zip(targets, heads):
        y = targets[name]
        traced[f"{name} head: train"] = _trace(lambda: head.train_on_batch(maps, y))
        traced[f"{name} head: validation"] = _trace(lambda: head.test_on_batch(maps, y))
    trunk = VGG16Trunk((cnn.input_size,) * 2 + (3,), width=cnn.width,
                       include_conv5_3=cnn.frozen_conv5_3)
    extractor = []
    built["extractor (trunk built)"] = _timed(lambda: extractor.append(
        TwoStreamFeatureExtractor(trunk, context, action,
                                  compute_dtype=cnn.compute_dtype)))
    traced["extract (cached maps)"] = _trace(
        lambda: extractor[0].extract(maps, from_maps=True))
    for name, head in zip(targets, heads):
        y = targets[name]
        head.jit_compile = True
        head.train_function = head.test_function = None
        xla[f"{name} head: train"] = _trace(lambda: head.train_on_batch(maps, y))
        xla[f"{name} head: validation"] = _trace(lambda: head.test_on_batch(maps, y))
    del context, action, heads, extractor, trunk
    keras.backend.clear_session()


def measure_builds_and_traces(config, num_classes, batch=2, heads=True,
                              lstms=("ms_lstm", "context")):  # fmt: skip
    """Seconds `(wall, CPU)` to build each model of a fold at `config`'s sizes, and to
    trace each Keras function the fold's loop calls (`_trace`, on `batch` examples: a
    traced graph does not depend on the batch size), as `run_fold` builds and calls
    them.

    Returns `{"build_s": {model: (wall, CPU)}, "orthogonal_s": (wall, CPU), "trace_s":
    {function: (wall, CPU)}, "xla_s": {function: (wall, CPU)}}`: `orthogonal_s` is one
    LSTM recurrent kernel's orthogonal initialiser (a QR, run on the device by a GPU);
    `xla_s` the heads' functions traced again with `jit_compile=True` (XLA on the CPU:
    Keras' "auto" turns XLA on for them on a GPU). `heads=False` skips the heads;
    `lstms` are the `lstm.model`s measured, in order: one measured again (as a later
    fold's is built and traced again in the same process) is keyed "... again".
    """
    import keras
    import numpy as np

    from msl_keras.config import apply_overrides
    from msl_keras.pipeline import lstm_training

    cnn, lstm = config.cnn, config.lstm
    side = cnn.input_size // 16
    maps_shape = (side, side, round(512 * cnn.width))
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((batch, *maps_shape)).astype("float32")
    onehot = np.eye(num_classes, dtype="float32")[np.arange(batch) % num_classes]
    built, traced, xla = _Timings(), _Timings(), _Timings()

    if heads:
        _measure_heads(config, num_classes, maps, onehot, built, traced, xla)
    built["orthogonal initialiser"] = _timed(
        lambda: keras.initializers.Orthogonal(seed=0)((lstm.units, 4 * lstm.units)))
    orthogonal = built.pop("orthogonal initialiser")
    steps = config.data.num_steps
    features = {s: rng.standard_normal((batch, steps, cnn.fc_units)).astype("float32")
                for s in ("context", "action")}
    sequence = np.repeat(onehot[:, None], steps, axis=1)
    for number, model_name in enumerate(lstms):
        again = " again" if model_name in lstms[:number] else ""
        row = apply_overrides(config, {"lstm.model": model_name})
        models = []

        def build():
            dims = (cnn.fc_units, cnn.fc_units)
            model = lstm_training.build_lstm(row, num_classes, *dims)
            lstm_training.compile_lstm(model, row)
            model.optimizer.build(model.trainable_variables)
            models.append(model)

        built[f"{model_name} LSTM{again}"] = _timed(build)
        model = models[0]
        x = {s: features[s] for s in model.input_streams}
        y = {name: sequence for name in model.stage_names}
        for what, call in (("train", lambda: model.train_on_batch(x, y)),
                           ("validation", lambda: model.test_on_batch(x, y)),
                           ("evaluate", lambda: model.predict_on_batch(x))):
            traced[f"{model_name} LSTM: {what}{again}"] = _trace(call)
        del model, models
        keras.backend.clear_session()

    def rounded(pairs):
        return {k: [round(v, 2) for v in pair] for k, pair in pairs.items()}

    return {"build_s": rounded(built), "trace_s": rounded(traced),
            "xla_s": rounded(xla), "orthogonal_s": [round(v, 2) for v in orthogonal]}


if __name__ == "__main__":
    import argparse
    import json

    import table2_paper_scale_gpu as script

    parser = argparse.ArgumentParser(description=measure_builds_and_traces.__doc__)
    parser.add_argument("--no-heads", action="store_true")
    parser.add_argument("--lstms", nargs="+", default=["ms_lstm", "context"])
    options = parser.parse_args()
    # The run's settings, random weights (the sizes are the trunk file's).
    args = script.parse_args(["--weights", "none"])
    config, index, _, _ = script.protocol(script.table_argv(args, dry_run=False))
    print(json.dumps(measure_builds_and_traces(
        config, index.num_classes, heads=not options.no_heads, lstms=options.lstms,
    ), indent=2))  # fmt: skip
