"""`mmix-train` without the `[train]` extra: one line naming the extra, no traceback."""

import configparser

from blocked_imports import ROOT, run_blocked


def test_console_script_is_the_checking_entry_point():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    scripts = setup["options.entry_points"]["console_scripts"]
    assert "mmix-train = mmix_jax.harness:run_cli" in scripts


def test_cli_without_the_extra_names_it_in_one_line():
    result = run_blocked("sys.argv = ['mmix-train', '--config=configs/default.py', "
                         "'--workdir=/nonexistent/never']\n"
                         "from mmix_jax.harness import run_cli\nrun_cli()")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'mmix_jax[train]'" in lines[0] and "ml_collections" in lines[0]
