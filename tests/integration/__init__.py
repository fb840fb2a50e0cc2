"""Integration tests: this pack inside a real ComfyUI (see conftest.py). A package, so its conftest
never shadows tests/conftest.py as the top-level module `conftest`."""
