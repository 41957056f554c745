"""The action-aware head at the paper's learning rate, with and without the CAM normalisation.

    python experiments/action_head_lr.py --root ../shared/data/ut_interaction \\
        --weights <VGG-16-shaped no-top .h5, e.g. weights/vgg16_hed_bsds500_notop.h5>

With a pretrained trunk, Eq. 3 multiplies conv5_3 by the unnormalised class activation
map `ReLU(M_k)`: the masked maps reach ~25,000 at 224 px and SGD at the paper's lr 0.001
diverged (RESULTS.md). This script trains both heads of ONE UT-Interaction fold (set 1,
test sequence 1 by default; validation is one training sequence) from a pretrained trunk
at lr 0.001, momentum 0.9, weight decay 0.0005 (L2), once per `cnn.cam_normalization`
("max": `ReLU(M_k) / max ReLU(M_k)` per frame; none: as printed), with the same seed,
frames and trunk, and reports per epoch the training cross-entropy of the action head's
masked path (its total loss, with the CAM branch's cross-entropy and the L2 term, is in
`results.json`) and the per-frame accuracy of the masked path
(`"action"` output) on the training frames (Keras' running value over the epoch, dropout
and augmentation on) and on the validation frames. The context head does not depend on
the option; its curve (training loss with the L2 term) is reported once, from the first
run.

No paper number to compare with: the paper reports no head accuracy. The settings are
CPU-sized (112 px, fc 256, 6 frames per clip, 10 epochs) and can be changed with `--set`.
Writes `<output-dir>/action_head_lr/results.json` and `action_head_lr.png`.
"""

import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SETTINGS = {
    "data.ut_set": 1,
    "data.ut_test_sequence": 1,
    "cnn.input_size": 112,
    "cnn.width": 1.0,
    "cnn.fc_units": 256,
    "cnn.cam_filters": 128,
    "cnn.frames_per_clip": 6,
    "cnn.augment_views": 2,
    "cnn.epochs": 10,
    "cnn.batch_size": 32,
    "cnn.momentum": 0.9,
    "cnn.weight_decay": 0.0005,
    "cnn.weight_decay_mode": "l2",
}


def _extra(parser):
    parser.add_argument(
        "--normalizations", nargs="+", choices=("max", "none"), default=["max", "none"],
        help="cnn.cam_normalization values to compare (default: max none)",
    )
    parser.add_argument("--learning-rate", type=float, default=0.001)


def read_history(path):
    """A head's CSV history (`train_cnn`'s `history_<head>.csv`) as `{column: [float]}`."""
    with open(Path(path), newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def _curves(history, prefix):
    """Per-epoch training loss and per-frame accuracies of one head's CSV history."""
    return {
        "loss": history["loss"],
        "masked_path_loss": history.get(f"{prefix}loss") if prefix else None,
        "train_accuracy": history[f"{prefix}accuracy"],
        "val_accuracy": history.get(f"val_{prefix}accuracy"),
        "val_loss": history.get("val_loss"),
    }


def _plot(curves, path, title):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for number, (label, curve) in enumerate(curves.items()):
        epochs = np.arange(1, len(curve["loss"]) + 1)
        # The masked path's own cross-entropy where there is one: finite even when the
        # total (with the L2 term of overflowing weights) is nan.
        loss = curve["masked_path_loss"] or curve["loss"]
        left.semilogy(epochs, loss, marker="o", ms=3, color=f"C{number}",
                      label=label)  # fmt: skip
        right.plot(epochs, 100 * np.asarray(curve["train_accuracy"]), marker="o",
                   ms=3, ls="--", color=f"C{number}", label=f"{label}: train")  # fmt: skip
        if curve["val_accuracy"]:
            right.plot(epochs, 100 * np.asarray(curve["val_accuracy"]), marker="s",
                       ms=3, color=f"C{number}", label=f"{label}: validation")  # fmt: skip
    left.set_xlabel("epoch")
    left.set_ylabel("training cross-entropy (action: masked path)")
    right.set_xlabel("epoch")
    right.set_ylabel("per-frame accuracy (%)")
    right.set_ylim(0, 102)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None):
    import keras

    from msl_keras.config import apply_overrides, parse_override
    from msl_keras.pipeline.head_training import train_cnn

    args = common.parse_args(
        "Action head at lr 0.001 with a pretrained trunk, with and without the CAM "
        "normalisation.",
        "ut_interaction",
        argv,
        extra=_extra,
    )
    config = common.scale_config(args, SETTINGS)
    # After scale_config, which lowers the step for pretrained trunks at cpu scale.
    config = apply_overrides(config, {"cnn.learning_rate": args.learning_rate})
    user = dict(parse_override(item) for item in args.overrides)
    config = apply_overrides(config, user)
    machine = common.machine(args.code)
    index = common.prepare_index(config, verbose=not args.quiet)
    (fold,) = index.folds
    out_dir = common.experiment_dir(args, "action_head_lr")

    runs, context = {}, None
    for normalization in args.normalizations:
        run_config = apply_overrides(config, {"cnn.cam_normalization": normalization})
        start = time.perf_counter()
        result = train_cnn(run_config, index, fold, overwrite=True, verbose=0)
        seconds = time.perf_counter() - start
        action = _curves(read_history(result["history_action"]), "action_")
        runs[normalization] = {**action, "wall_s": seconds}
        if context is None:
            context = _curves(read_history(result["history_context"]), "")
        keras.backend.clear_session()
        if not args.quiet:
            print(f"cam_normalization={normalization}: {seconds:.0f} s", flush=True)

    header = ["epoch"] + [
        f"{name} {column}"
        for name in list(runs) + ["context"]
        for column in ("loss", "train", "val")
    ]
    rows = []
    for epoch in range(len(context["loss"])):
        row = [str(epoch + 1)]
        for curve in list(runs.values()) + [context]:
            loss = curve["masked_path_loss"] or curve["loss"]
            row.append(f"{loss[epoch]:.3g}" if epoch < len(loss) else "-")
            for key in ("train_accuracy", "val_accuracy"):
                values = curve[key] or []
                row.append(100 * values[epoch] if epoch < len(values) else None)
        rows.append(row)
    weights = config.cnn.weights
    title = (
        f"Heads on UT-Interaction fold {fold.name}, trunk: "
        f"{Path(weights).name if weights not in (None, 'imagenet') else weights}, "
        f"lr {args.learning_rate}, {config.cnn.input_size} px"
    )
    print(common.format_table(title, header, rows))
    curves = {f"action, cam_normalization={k}": v for k, v in runs.items()}
    curves["context head"] = context
    _plot(curves, out_dir / "action_head_lr.png", title)
    common.write_results(
        out_dir,
        {
            "experiment": "action_head_lr",
            "command": common.command_line("action_head_lr.py", args),
            "fold": fold.name,
            "trunk": common.trunk_description(config),
            "config": config.to_dict(),
            "action": runs,
            "context": context,
            "machine": machine,
        },
    )


if __name__ == "__main__":
    main()
