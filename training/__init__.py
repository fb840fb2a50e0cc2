"""The Salt trainer: SC-DMD distillation and cache-distribution-aware AR training of Wan 2.1 students.

Run it as `python -m training <command> --config <yaml> [--set key=value ...]` (see docs/training.md).
"""
