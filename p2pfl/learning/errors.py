"""The error of the learning layer."""


class LearningSettingError(Exception):
    """A learning setting or input (dataset, CSV file, partition, model, optimizer, DP-SGD) that
    cannot be used; the text names it. The CLI reports it like a UserError (p2pfl.errors)."""
