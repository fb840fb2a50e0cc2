"""`python -m training <command> --config <yaml> [--set key=value ...]`"""
import sys

from .cli import main

sys.exit(main())
