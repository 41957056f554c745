"""Errors users can act on: each names the file or key at fault and what to do."""


class MslKerasError(Exception):
    """Base class of every error msl_keras raises on purpose."""


class DatasetError(MslKerasError):
    """A dataset folder, split list or clip record is missing or not as expected."""


class VideoDecodeError(MslKerasError):
    """A clip cannot be opened, is empty, truncated or has a gap; `path` names it."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot decode video '{self.path}': {reason}")


class FeatureStoreError(MslKerasError):
    """A feature store is unreadable, inconsistent, or holds invalid values."""


class FeatureStoreMismatchError(FeatureStoreError):
    """A feature store was made with other settings than the ones asked for."""


class WeightsError(MslKerasError):
    """A weights file is missing, unreachable, or made for another architecture."""


class ConfigError(MslKerasError, ValueError):
    """A config key or value is not valid."""


def listing(items, limit=20):
    """`items` as text for an error message: the first `limit`, then how many in all."""
    items = [str(item) for item in items]
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def check_choice(name, value, choices):
    """A ValueError naming `name`, `choices` and `value` unless `value in choices`."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {choices}. Received: {name}={value!r}"
        )
