"""README's example of calling mixup_step with your own Flax model runs as written."""

import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_own_model_example_runs_and_trains():
    text = README.read_text()
    section = text.split("## Use it from your own JAX code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = eval(result.stdout.strip().splitlines()[-1])  # the example prints a dict
    assert set(metrics) >= {"loss", "mixed_accuracy", "lam", "mix_layer", "grad_norm"}
    assert metrics["mix_layer"] in (0.0, 1.0) and 0.0 <= metrics["lam"] <= 1.0


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in README.read_text().splitlines()


def test_bring_your_own_model_examples_run_linen_then_nnx():
    section = README.read_text().split("## Bring your own model", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))
    code += "\nprint(float(metrics['loss']), float(metrics['mix_layer']))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loss, layer = map(float, result.stdout.split()[-2:])
    assert loss > 0 and layer in (0.0, 1.0)


def test_semi_supervised_command_names_a_valid_config_and_keys():
    import importlib.util

    from ml_collections import config_flags  # noqa: F401  (the CLI's loader)

    from mmix_jax.harness.configuration import run_specs

    line = next(text for text in README.read_text().splitlines()
                if text.startswith("mmix-train --config=configs/ssl_"))
    flags = dict(token.split("=", 1) for token in line.split()[1:])
    path, arg = flags.pop("--config").split(":")
    spec = importlib.util.spec_from_file_location("readme_config", README.parent / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg)
    for key, value in flags.items():
        if key.startswith("--config."):
            section, name = key[len("--config."):].split(".")
            assert name in config[section]
            config[section][name] = value
    [(name, run)] = run_specs(config)
    assert run.semi_supervised is not None and run.semi_supervised.spec.uses_unlabeled
