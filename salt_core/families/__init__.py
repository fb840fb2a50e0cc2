"""The released Wan 2.1 video model families as data, and which one a checkpoint file is.

    family = FAMILIES["salt-ll"]                      # sampling defaults, weights entry, CFG, sources of each fact
    choice = choose_family(evidence, family="auto")   # from keys / shapes / container / header / file name
"""
from .detect import AUTO, WEIGHTS, Evidence, FamilyChoice, choose_family, entry_preference
from .table import (FAMILIES, AdapterPairing, Fact, Family, family_names, get_family, window_from_local_attention)

__all__ = [
    "AUTO", "WEIGHTS", "Evidence", "FamilyChoice", "choose_family", "entry_preference",
    "FAMILIES", "AdapterPairing", "Fact", "Family", "family_names", "get_family", "window_from_local_attention",
]
