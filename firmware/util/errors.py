"""Errors shared by the subsystems. Caught by class, never by name. (The store's own errors,
StoreError > StoreMissing, StoreCorrupt, live in store/records.py.)"""


class Refused(ValueError):
    """An action asked with a value it cannot take: the text says which value and what is accepted.
    Nothing was changed."""
