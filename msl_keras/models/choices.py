"""The check of a model argument that takes one of a few values."""


def check_choice(name, value, choices):
    """A ValueError naming `name`, `choices` and `value` unless `value in choices`."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {choices}. Received: {name}={value!r}"
        )
