"""Invalid configs fail before any compute with one line naming the key; workdirs are safe."""

import json
import pathlib
import subprocess
import sys

import pytest

from mmix_jax.errors import WorkdirError
from mmix_jax.harness import runs
from mmix_jax.harness.configuration import ConfigError, check_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "configs"))
import default  # noqa: E402  (configs/default.py)


def single(**overrides):
    config = default.get_config("manifold")
    config.variants = {}
    for key, value in overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return config


def test_default_config_is_valid():
    check_config(default.get_config())
    for method in ("erm", "input", "manifold"):
        check_config(default.get_config(method))


@pytest.mark.parametrize("key, value, expected", [
    ("model.name", "resnet9", "config.model.name = 'resnet9' is invalid: choose one of ("),
    ("loss", "mse", "config.loss = 'mse' is invalid: choose one of ('bce', 'soft_ce')"),
    ("mix.alpha", -1.0, "config.mix.alpha = -1.0 is invalid: must be >= 0"),
    ("mix.layers", (0, 7), "config.mix.layers = (0, 7) is invalid: mlp has mix points 0..3"),
    ("num_classes", 1, "config.num_classes = 1 is invalid: must be an integer >= 2"),
    ("batch_size", 0, "config.batch_size = 0 is invalid: must be a positive integer"),
    ("batch_size", -5, "config.batch_size = -5 is invalid: must be a positive integer"),
    ("data.name", "imagenet", "config.data.name = 'imagenet' is invalid: choose one of ("),
    ("model.dtype", "float16", "config.model.dtype = 'float16' is invalid"),
    ("data.turns", 0.0, "config.data.turns = 0.0 is invalid: spirals need turns > 0"),
    ("data.name", "moons", "config.data.turns = 1.5 is invalid: only spirals have turns"),
    ("cross_device_batch_norm", True,
     "config.cross_device_batch_norm = True is invalid: model 'mlp' has no BatchNorm"),
])
def test_invalid_values_are_named_in_one_line(key, value, expected):
    with pytest.raises(ConfigError) as error:
        check_config(single(**{key: value}))
    message = str(error.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_cross_device_batch_norm_puts_the_data_axis_on_every_batch_norm():
    from mmix_jax.harness.configuration import build_model
    config = single()
    config.model = {"name": "preactresnet18", "dtype": "float32"}
    assert build_model(config).bn_axis is None
    config.cross_device_batch_norm = True
    assert build_model(config).bn_axis == "data"


def test_mix_layer_bound_follows_the_model():
    config = single(**{"model.name": "preactresnet18", "mix.layers": (4,)})
    config.model = {"name": "preactresnet18", "dtype": "float32"}
    with pytest.raises(ConfigError, match="preactresnet18 has mix points 0..3"):
        check_config(config)


def test_unknown_model_argument_is_named():
    config = single()
    config.model.depth = 12  # the MLP takes no depth
    with pytest.raises(ConfigError, match="config.model = .* is invalid for model 'mlp'.*depth"):
        check_config(config)


def test_invalid_variant_is_named():
    config = default.get_config()
    config.variants.input.mix.alpha = -2.0
    with pytest.raises(ConfigError, match="variant 'input': config.mix.alpha = -2.0"):
        check_config(config)


def test_finished_workdir_is_refused_and_left_untouched(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"test_accuracy": 0.9}))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(WorkdirError, match="already holds a finished run"):
        runs.run(default.get_config(), tmp_path)
    assert json.loads(summary.read_text()) == {"test_accuracy": 0.9}
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mmix_jax.harness.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_reports_a_bad_override_in_one_line_and_writes_nothing(tmp_path):
    workdir = tmp_path / "run"
    result = run_cli("--config=configs/default.py:manifold", "--config.num_classes=1",
                     f"--workdir={workdir}")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mmix-train: error: variant 'manifold': config.num_classes = 1"), last
    assert not workdir.exists()


def test_config_file_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="unknown method; choose one of"):
        default.get_config("cutmix")


def test_a_validation_split_with_a_test_metric_for_the_best_checkpoint_is_refused_up_front():
    """The kept best checkpoint is reported as "validation selected": choosing it on a test
    metric would be choosing on test. Refused by check_config, before any data is read."""
    sys.path.insert(0, str(ROOT / "configs"))
    import supervised  # noqa: E402

    config = supervised.get_config("fashion_mnist,preactresnet18,manifold")
    config.data.update(dict(validation_per_class=10, manual_dir="/nowhere"))
    check_config(config)  # best_metric "auto" becomes val_accuracy
    config.checkpoint.best_metric = "test_accuracy"
    with pytest.raises(ConfigError) as error:
        check_config(config)
    assert str(error.value).startswith("config.checkpoint.best_metric = 'test_accuracy' is "
                                       "invalid: the best checkpoint is chosen on the "
                                       "validation split")
