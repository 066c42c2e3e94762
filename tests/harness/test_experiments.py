"""The paper's experiment configs: every row is valid and has the paper's settings."""

import importlib
import pathlib
import sys

import pytest

from mmix_jax.harness.configuration import build_model, check_config, variants
from mmix_jax.harness.methods import PAPER_METHODS

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "configs"))
import supervised  # noqa: E402  (configs/supervised.py)
import vit  # noqa: E402  (configs/vit.py)

IMAGE_FILES = {"cifar10": "cifar10", "cifar100": "cifar100", "svhn": "svhn_cropped",
               "fashion_mnist": "fashion_mnist"}


def test_the_configs_methods_are_the_packages_table():
    assert supervised.METHODS == {name: (m.alpha, m.mix_layers)
                                  for name, m in PAPER_METHODS.items()}


@pytest.mark.parametrize("file", sorted(IMAGE_FILES))
@pytest.mark.parametrize("model", ["preactresnet18", "preactresnet34", "wrn28_10"])
@pytest.mark.parametrize("method, alpha, layers", [
    ("erm", 0.0, ()), ("input", 1.0, (0,)), ("manifold", 2.0, (0, 1, 2))])
def test_every_table_row_is_a_valid_config_with_the_papers_settings(file, model, method, alpha,
                                                                    layers):
    config = supervised.get_config(f"{file},{model},{method}")
    check_config(config)
    assert config.data.name == IMAGE_FILES[file]
    assert config.model.name == model
    assert (config.mix.alpha, tuple(config.mix.layers)) == (alpha, layers)
    assert not config.variants
    optimizer = config.optimizer
    assert (optimizer.learning_rate, optimizer.momentum, optimizer.nesterov,
            optimizer.weight_decay, optimizer.decay_factor) == (0.1, 0.9, True, 1e-4, 0.1)
    assert config.batch_size == 100 and config.loss == "bce"
    if model == "wrn28_10":
        assert (config.num_epochs, tuple(optimizer.milestones)) == (400, (200, 300))
    else:
        # The commands of the authors' README: 2000 epochs, ×0.1 at 500, 1000 and 1500.
        assert (config.num_epochs, tuple(optimizer.milestones)) == (2000, (500, 1000, 1500))
    # Augmentation as the paper's code: crop + flip for CIFAR, crop only for SVHN; SVHN
    # normalised with mean = std = 0.5; parameters drawn as PyTorch's defaults.
    assert config.data.crop_padding == 2
    assert config.data.flip == (file != "svhn")
    assert config.data.normalization == ("half" if file == "svhn" else "per_channel")
    assert config.model.init == "torch"
    assert config.eval.fgsm_space == "normalized"


def test_the_older_1200_epoch_schedule_is_a_named_option():
    config = supervised.get_config("cifar10,preactresnet18,schedule=legacy1200")
    assert (config.num_epochs, tuple(config.optimizer.milestones)) == (1200, (400, 800))
    config = supervised.get_config("cifar10,preactresnet18,schedule=legacy1200,epochs=120")
    assert (config.num_epochs, tuple(config.optimizer.milestones)) == (120, (40, 80))
    with pytest.raises(ValueError, match="schedule=fast; choose one of"):
        supervised.get_config("cifar10,preactresnet18,schedule=fast")


def test_no_method_trains_all_three_as_variants():
    config = supervised.get_config("cifar10,preactresnet18")
    check_config(config)
    runs = {name: (single.mix.alpha, tuple(single.mix.layers)) for name, single in variants(config)}
    assert runs == {"erm": (0.0, ()), "input": (1.0, (0,)), "manifold": (2.0, (0, 1, 2))}


@pytest.mark.parametrize("arg, epochs, milestones", [
    ("preactresnet18,manifold,epochs=40", 40, (10, 20, 30)),
    ("wrn28_10,erm,epochs=40", 40, (20, 30)),
    ("preactresnet18,epochs=4", 4, (1, 2, 3)),
])
def test_epochs_option_scales_the_milestones(arg, epochs, milestones):
    config = supervised.get_config(f"cifar100,{arg}")
    assert (config.num_epochs, tuple(config.optimizer.milestones)) == (epochs, milestones)


@pytest.mark.parametrize("arg, message", [
    ("resnet9,manifold", "unexpected 'resnet9'"),
    ("preactresnet18,wrn28_10", "unexpected 'wrn28_10'"),
    ("preactresnet18,steps=5", "unknown option(s) ['steps']"),
])
def test_bad_arguments_are_named(arg, message):
    with pytest.raises(ValueError) as error:
        supervised.get_config(f"cifar10,{arg}")
    assert message in str(error.value)


def test_flattening_mlp_mixes_only_at_the_twelve_unit_bottleneck():
    config = importlib.import_module("flattening").get_config("mnist,manifold")
    check_config(config)
    model = build_model(config)
    assert model.hidden_widths == (1024, 1024, 1024, 12, 1024, 1024, 1024, 1024)
    assert model.activation == "leaky_relu"
    # Mix point i is the output of hidden layer i: point 4 is the bottleneck's output.
    assert model.bottleneck_point == 4 and model.hidden_widths[4 - 1] == 12
    assert (config.mix.alpha, tuple(config.mix.layers)) == (2.0, (4,))
    assert config.eval.spectrum_point == 4
    assert config.data.name == "mnist"
    assert importlib.import_module("flattening").get_config("").data.name == "fashion_mnist"


@pytest.mark.parametrize("dataset", sorted(IMAGE_FILES))
@pytest.mark.parametrize("size", ["vit_mini", "vit_ti", "vit_s"])
def test_vit_configs_are_valid_with_their_stated_numbers(dataset, size):
    config = vit.get_config(f"{dataset},{size},manifold,points=late")
    check_config(config)
    model = build_model(config)
    depth = {"vit_mini": 4, "vit_ti": 12, "vit_s": 12}[size]
    assert model.num_mix_points == depth + 2  # input, tokens, one after each block
    assert tuple(config.mix.layers) == (0, depth, depth + 1)  # the last two blocks' outputs
    assert model.rng_streams == ("dropout", "drop_path")  # stochastic depth on its own stream
    optimizer = config.optimizer
    assert (optimizer.name, optimizer.learning_rate, optimizer.weight_decay) == ("adamw", 1e-3, 0.05)
    assert optimizer.schedule == "cosine" and optimizer.rampdown_epochs == config.num_epochs
    assert optimizer.warmup_epochs == pytest.approx(0.05 * config.num_epochs)
    for points, sets in vit.POINT_SETS.items():
        assert set(sets(depth)) <= set(range(depth + 2)) and 0 in sets(depth), points
    assert [name for name, _ in variants(vit.get_config(dataset))] == ["erm", "input", "manifold"]
    with pytest.raises(ValueError, match="points=deep; choose one of"):
        vit.get_config(f"{dataset},{size},points=deep")
