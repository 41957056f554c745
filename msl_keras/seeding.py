"""One call that seeds every source of randomness a run uses."""

import os
import random

import keras
import numpy as np


def set_seed(seed, deterministic_ops=False):
    """Seeds Python's `random`, NumPy, TensorFlow and Keras for a repeatable run.

    Args:
        seed: int.
        deterministic_ops: also make TensorFlow's kernels deterministic
            (`tf.config.experimental.enable_op_determinism`): repeatable on GPU too, at
            some speed cost, and irreversible for the process.

    Returns:
        `seed`.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int. Received: seed={seed!r}")
    seed = int(seed)
    # For subprocesses (data workers); the running interpreter's hash seed is fixed.
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    # Seeds Python, NumPy and the backend (tf.random.set_seed) together.
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    return seed
