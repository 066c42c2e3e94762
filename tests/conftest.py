import pathlib
import sys

# Test helpers (cli_runs.py, sharded_checks.py) live beside the tests.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
