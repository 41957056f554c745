"""Seeds every source of randomness of a run; pins what else moves its numbers.

Two runs with the same seed can still differ in the last bits of their sums, which
training over many epochs turns into other predictions: the order of a kernel's
additions depends on how many threads split it (`pin_cpu_threads`), on whether the
kernel is deterministic (`deterministic_ops`), and on oneDNN, whose CPU kernels are
chosen by the processor's instruction set and can only be turned off before TensorFlow
is imported: `TF_ENABLE_ONEDNN_OPTS=0` (`onednn_enabled`).
"""

import contextlib
import os

import keras
import numpy as np


def set_seed(seed, deterministic_ops=False):
    """Seeds Python's `random`, NumPy, TensorFlow and Keras; returns `seed` as an int.

    `deterministic_ops` also makes TensorFlow's kernels deterministic (repeatable on GPU
    too, at some speed cost, and irreversible for the process).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int. Received: seed={seed!r}")
    seed = int(seed)
    # For subprocesses (data workers); the running interpreter's hash seed is fixed.
    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)  # Python's `random`, NumPy and TensorFlow
    if deterministic_ops:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    return seed


def pin_cpu_threads(threads=1):
    """Runs TensorFlow's CPU ops (intra- and inter-op pools) on `threads` threads.

    A kernel split over more threads (TensorFlow's default: one per core) adds its
    partial sums in another order. Returns whether both pools now run `threads`: they
    cannot change once TensorFlow has run its first op.
    """
    import tensorflow as tf

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"`threads` must be a positive int. Received: {threads=!r}")
    threading = tf.config.threading
    with contextlib.suppress(RuntimeError):  # TensorFlow has started: they stay
        threading.set_intra_op_parallelism_threads(threads)
        threading.set_inter_op_parallelism_threads(threads)
    return (
        threading.get_intra_op_parallelism_threads() == threads
        and threading.get_inter_op_parallelism_threads() == threads
    )


def onednn_enabled():
    """Whether TensorFlow's oneDNN CPU kernels are on (on by default on x86 Linux)."""
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower()
    return value not in ("0", "false")
