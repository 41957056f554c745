"""tf.distribute strategies by name (`Config.strategy`), for training on many devices:

- `"default"`: `tf.distribute.get_strategy()`, one device, no distribution.
- `"mirrored"`: `tf.distribute.MirroredStrategy` over every visible GPU; without a GPU,
  over the logical CPU devices (`configure_logical_cpus(n)` before TensorFlow
  initialises makes `n` of them, e.g. to test data parallelism on a laptop).
- `"multi_worker"`: `tf.distribute.MultiWorkerMirroredStrategy`; the cluster comes from
  the `TF_CONFIG` environment variable, which must be set on every worker.
- `"tpu"`: `TPUStrategy` on the TPU named by `$TPU_NAME` (empty: the local TPU VM).

Models AND optimizers must be created inside `strategy.scope()` (the stages do this);
`fit` splits the global batch across `strategy.num_replicas_in_sync`.
"""

import json
import os

import tensorflow as tf

from msl_keras.config import STRATEGIES as STRATEGY_NAMES
from msl_keras.errors import ConfigError, MslKerasError


class StrategyError(MslKerasError, RuntimeError):
    """A tf.distribute strategy was asked for but cannot start on this machine."""


def configure_logical_cpus(n):
    """Splits the host CPU into `n >= 1` logical devices; returns their names.

    Must run before TensorFlow initialises its devices (before any op, model or dataset
    is created in the process); calling it again with the same `n` is harmless. A
    `StrategyError` if TensorFlow is already initialised with another device layout.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"configure_logical_cpus needs n >= 1. Received: n={n}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as error:
        current = tf.config.list_logical_devices("CPU")
        if len(current) != n:
            raise StrategyError(
                f"Cannot split the CPU into {n} logical devices: TensorFlow is already "
                f"initialised with {len(current)} CPU device(s) ({error}). Call "
                "configure_logical_cpus(n) first in the process, before any model, "
                "tensor or dataset is created."
            ) from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def get_strategy(name="default"):
    """The `tf.distribute.Strategy` called `name`, one of `STRATEGY_NAMES`; a
    `ConfigError` for another name, a `StrategyError` (saying what to do) if it cannot
    start here."""
    if name not in STRATEGY_NAMES:
        raise ConfigError(
            f"Unknown strategy {name!r}. Valid strategies: "
            f"{', '.join(map(repr, STRATEGY_NAMES))}."
        )
    strategies = {"mirrored": _mirrored, "multi_worker": _multi_worker, "tpu": _tpu}
    return strategies.get(name, tf.distribute.get_strategy)()  # "default"


def _mirrored():
    gpus = tf.config.list_logical_devices("GPU")
    try:
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        # NCCL needs GPUs: reduce through one device.
        return tf.distribute.MirroredStrategy(
            cpus, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    except (RuntimeError, ValueError) as error:
        raise StrategyError(
            f"MirroredStrategy could not start: {error}. Use strategy='default' on one "
            "device."
        ) from None


class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """The tf.distribute strategy, with a `reduce` that takes what Keras' `fit` gives.

    Keras 3 (3.15) calls `strategy.reduce` in two ways the strategy refuses
    (keras-team/keras#20329): with the first batch's dicts of inputs and targets, and
    with `axis=0` on each step's scalar loss and metrics. This `reduce` goes leaf by
    leaf, a scalar over the replicas alone: what Keras means, as MirroredStrategy does.
    """

    def reduce(self, reduce_op, value, axis):
        parent = super()

        def one(leaf):
            rank = self.experimental_local_results(leaf)[0].shape.rank
            return parent.reduce(reduce_op, leaf, None if rank == 0 else axis)

        return tf.nest.map_structure(one, value)


def _multi_worker():
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise StrategyError(
            "strategy='multi_worker' needs the TF_CONFIG environment variable on every "
            'worker, e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", '
            '"host2:12345"]}, "task": {"type": "worker", "index": 0}}\'; it is not '
            "set. Use strategy='mirrored' for the devices of one machine."
        )
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as error:
        raise StrategyError(
            f"TF_CONFIG is not valid JSON ({error}). Received: {text!r}"
        ) from None
    if not isinstance(tf_config, dict) or not {"cluster", "task"} <= set(tf_config):
        raise StrategyError(
            f"TF_CONFIG must hold 'cluster' and 'task' entries. Received: {text!r}"
        )
    try:
        return MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as error:
        raise StrategyError(
            f"MultiWorkerMirroredStrategy could not start: {error}. Create it first in "
            "the program, before any other TensorFlow op, with the same TF_CONFIG "
            "cluster on every worker."
        ) from None


def _tpu():
    tpu_name = os.environ.get("TPU_NAME", "")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except Exception as error:  # resolver and runtime raise many types
        raise StrategyError(
            f"No TPU could be reached (TPU_NAME={tpu_name!r}): {type(error).__name__}: "
            f"{error}. Run on a TPU VM or set TPU_NAME to the TPU's name or grpc:// "
            "address; use strategy='default' or 'mirrored' otherwise."
        ) from None
