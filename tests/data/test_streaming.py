"""The streaming input path: the same batches as the in-memory path, read per process by grain
threads; host crops; an epoch of large JPEGs read without holding them; and a two-process
ImageNet-shaped run killed and resumed bit-exactly on generated JPEGs."""

import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_runs import (
    ROOT,
    assert_bit_identical,
    checkpoint_steps,
    environment,
    final_params,
    free_port,
)
from PIL import Image

from mmix_jax.data.host_transforms import crop_window, inception_crop
from mmix_jax.data.pipeline import ArrayDataset, TrainBatches
from mmix_jax.data.records import NpzRecords, RecordDataset
from mmix_jax.data.streaming import StreamingBatches, next_batch
from mmix_jax.errors import DataError
from mmix_jax.parallel import process_share


@pytest.fixture(scope="module")
def npz_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 6, 6, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, 50)
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    np.savez(path, image=images, label=labels, test_image=images[:4], test_label=labels[:4])
    return path, images, labels.astype(np.int32)


def test_streamed_batches_are_the_in_memory_batches_and_each_process_reads_its_share(npz_file):
    path, images, labels = npz_file
    in_memory = TrainBatches(ArrayDataset(images, labels), batch_size=8, seed=3)
    on_disk = TrainBatches(RecordDataset(NpzRecords(path)), batch_size=8, seed=3)
    steps = 3 * in_memory.steps_per_epoch  # three epochs, each reshuffled
    stream = StreamingBatches(on_disk, steps, threads=3, prefetch=4).iterator(start_step=0)
    for step in range(steps):
        expected = in_memory[step]
        got = next_batch(stream, step)
        for key in ("image", "label"):
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{key} {step}")
        for process in (0, 1):  # what each of 2 processes reads = its cut of the global batch
            share = on_disk.share(step, process, 2)
            cut = {k: v[process * 4:(process + 1) * 4] for k, v in expected.items()}
            for key in ("image", "label"):
                np.testing.assert_array_equal(share[key], cut[key])
    assert len({tuple(in_memory.rows(s)) for s in range(steps)}) == steps
    resumed = StreamingBatches(on_disk, steps, threads=1, prefetch=1).iterator(start_step=9)
    np.testing.assert_array_equal(next_batch(resumed, 9)["image"],
                                  process_share(in_memory[9])["image"])
    with pytest.raises(RuntimeError, match="data stream is at step 10 but training at step 11"):
        next_batch(resumed, 11)


def test_a_compressed_npz_cannot_be_streamed(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", image=np.zeros((2, 2, 2, 1), np.uint8),
                        label=np.zeros(2))
    with pytest.raises(DataError, match="compressed .*np.savez.*streaming=False"):
        NpzRecords(tmp_path / "c.npz")


def test_random_crop_windows_keep_their_area_and_ratio_bounds():
    rng = np.random.default_rng(0)
    for height, width in [(60, 80), (300, 40), (33, 33)]:
        for _ in range(200):
            top, left, h, w = crop_window(height, width, rng)
            assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
            ratio_ok = 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
            area = h * w / (height * width)
            assert (ratio_ok and 0.07 <= area <= 1.0) or (top, left) == ((height - h) // 2,
                                                                       (width - w) // 2)


def test_evaluation_crop_is_the_centre_of_the_resized_image():
    """A 100 × 200 image whose left half is black and right half white: resized so its shorter
    side is round(32 / 0.875) = 37 (→ 37 × 74), the centre 32 × 32 spans columns 21..52 of 74,
    so the black/white edge (column 37) falls at column 16 of the crop."""
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 100:] = 255
    out = inception_crop(image, None, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[:, :15] == 0).all() and (out[:, 18:] == 255).all()
    flips = [inception_crop(image, np.random.default_rng(s), 32) for s in range(20)]
    assert all(f.shape == (32, 32, 3) for f in flips)
    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, format="JPEG", quality=95)
    from_bytes = inception_crop(encoded.getvalue(), None, 32)  # decoded at 1/2 scale
    assert from_bytes.shape == (32, 32, 3)
    assert np.abs(from_bytes.astype(int) - out).mean() < 8


@pytest.fixture(scope="module")
def large_jpegs(tmp_path_factory):
    """128 training JPEGs of 3072–6144 pixels a side (about 8 GB decoded, a few MB of files)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from generated_jpegs import make

    data_dir = tmp_path_factory.mktemp("tfds")
    make(data_dir, train=128, test=16, side=6144)
    return data_dir


@pytest.fixture(scope="module")
def small_jpegs(tmp_path_factory):
    """128 training JPEGs of 48–96 pixels a side: the ImageNet path's decoding and crops at a
    cost that leaves the two-process run's time to the processes themselves."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from generated_jpegs import make

    data_dir = tmp_path_factory.mktemp("tfds_small")
    make(data_dir, train=128, test=16, side=96)
    return data_dir


def decoded_size(data_dir) -> int:
    """Bytes of the decoded training images (from the JPEG headers: nothing is decoded)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("generated_jpegs", data_dir=str(data_dir))
    source = builder.as_data_source(split="train", decoders={
        "image": tfds.decode.SkipDecoding()})
    return sum(int(np.prod(Image.open(io.BytesIO(record["image"])).size)) * 3
               for record in source)


def _rss_anon() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def test_streaming_reads_an_epoch_of_large_jpegs_without_holding_them(large_jpegs):
    """Through the config path (data_config.data_spec → load_dataset → StreamingBatches):
    an epoch of ImageNet-style crops; this process's anonymous memory grows by less than a
    fiftieth of the decoded training set, and a repeat of the epoch gives the same batches."""
    import ml_collections

    from mmix_jax.data.datasets import load_dataset
    from mmix_jax.harness.configuration import data_spec

    config = ml_collections.ConfigDict(dict(
        name="imagenet2012", tfds_name="generated_jpegs", data_dir=str(large_jpegs),
        image_shape=(32, 32, 3), host_transform="inception_crop", normalization="imagenet",
        streaming="auto", loader_threads=4))
    spec = data_spec(config, num_classes=4)
    splits = load_dataset(spec, seed=0, num_classes=4)
    decoded = decoded_size(large_jpegs)
    batches = StreamingBatches(TrainBatches(splits.train, 16, seed=0), 8, threads=4, prefetch=4)
    before, peak, first = _rss_anon(), 0, []
    for batch in batches.iterator(0):
        assert batch["image"].shape == (16, 32, 32, 3) and batch["image"].dtype == np.uint8
        first.append(batch["image"])
        peak = max(peak, _rss_anon())
    assert len(first) == 8 and splits.test.images.shape == (16, 32, 32, 3)
    growth = peak - before
    print(f"decoded {decoded / 2**20:.0f} MiB, loader growth {growth / 2**20:.1f} MiB")
    assert decoded > 6 << 30 and growth < decoded / 50, (growth, decoded)
    again = batches.iterator(5)
    np.testing.assert_array_equal(next_batch(again, 5)["image"], first[5])


GENERATED_RUN = [
    "--config=configs/imagenet.py:input", "--config.data.tfds_name=generated_jpegs",
    "--config.eval.fgsm_epsilon=0",
    "--config.num_classes=4", "--config.data.image_shape=(32,32,3)", "--config.model.width=4",
    "--config.model.name=preactresnet18",  # its ImageNet stem and bfloat16; 50: test_models
    "--config.batch_size=16", "--config.eval_batch_size=16", "--config.num_epochs=3",
    "--config.optimizer.learning_rate=0.05", "--config.optimizer.warmup_epochs=1",
    "--config.optimizer.milestones=(2,)", "--config.checkpoint.every_epochs=0",
    "--config.checkpoint.every_steps=8", "--config.checkpoint.keep=1",
    "--config.data.loader_threads=2", "--config.log_every_steps=8"]


def _wait(process, timeout):
    """(returncode, peak RSS in bytes) of a child, from wait4's resource usage."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_maxrss * 1024
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"run did not finish in {timeout} s")


def _two_processes(workdir, data_dir, cache, kill_after_step=None):
    port = free_port()
    processes = [subprocess.Popen(
        [sys.executable, "-m", "mmix_jax.harness.main", *GENERATED_RUN, f"--workdir={workdir}",
         f"--config.data.data_dir={data_dir}", f"--config.compilation_cache_dir={cache}",
         f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
         f"--process_id={i}"], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=environment(devices=1)) for i in range(2)]
    if kill_after_step is not None:
        deadline = time.time() + 300
        while time.time() < deadline and not any(
                s >= kill_after_step for s in checkpoint_steps(workdir)):
            time.sleep(0.2)
        for process in processes:
            process.send_signal(signal.SIGKILL)
    return [_wait(process, 300) for process in processes]


def test_two_process_streaming_run_killed_resumes_bit_exactly(tmp_path, small_jpegs):
    """ImageNet's config (host crops of JPEGs decoded per batch, grain threads, a bfloat16
    PreActResNet with the ImageNet stem at width 4, Input Mixup) on 128 generated JPEGs:
    two processes, SIGKILLed after a checkpoint, resumed; the final parameters equal an
    uninterrupted one-process run on two devices. (That the loader holds no more than a few
    batches whatever the images' size is the test above's, on 8 GB of decoded JPEGs.)"""
    cache = tmp_path / "xla_cache"  # the resumed processes reuse the killed ones' compilations
    reference = subprocess.run(
        [sys.executable, "-m", "mmix_jax.harness.main", *GENERATED_RUN,
         f"--workdir={tmp_path / 'one'}", f"--config.data.data_dir={small_jpegs}"], cwd=ROOT,
        capture_output=True, text=True, timeout=300, env=environment(devices=2))
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = _two_processes(tmp_path / "two", small_jpegs, cache, kill_after_step=8)
    assert all(code == -signal.SIGKILL for code, _ in killed), killed
    stored = checkpoint_steps(tmp_path / "two")
    assert stored and max(stored) < 24, stored
    resumed = _two_processes(tmp_path / "two", small_jpegs, cache)
    assert all(code == 0 for code, _ in resumed), resumed
    assert (tmp_path / "two" / "checkpoints" / "24" / "data").is_dir()
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["resumed_from_step"] == max(stored)
    step, two = final_params(tmp_path / "two")
    _, one = final_params(tmp_path / "one")
    assert step == 24
    assert_bit_identical(two, one)


def test_resume_accepts_other_reading_settings_but_not_other_data():
    """Threads, prefetch and streaming change how batches are read, not which (the first test
    above): a resume may change them; a different crop or data set is still refused."""
    from mmix_jax.harness.checkpoint import config_differences

    stored = {"seed": 0, "data": {"name": "imagenet2012", "streaming": True, "loader_threads": 16,
                                  "host_transform": "inception_crop"}}
    reading = {"seed": 0, "data": dict(stored["data"], streaming="auto", loader_threads=4,
                                       prefetch_batches=2)}
    assert config_differences(stored, reading) == []
    other = {"seed": 0, "data": dict(stored["data"], host_transform="")}
    assert config_differences(stored, other) == ["data.host_transform: 'inception_crop' → ''"]


def test_streamed_npz_of_the_wrong_shape_is_refused_by_name(npz_file):
    import ml_collections

    from mmix_jax.data.datasets import load_dataset
    from mmix_jax.harness.configuration import data_spec

    path, _, _ = npz_file
    config = ml_collections.ConfigDict(dict(name="npz", path=str(path), image_shape=(8, 8, 1),
                                            streaming=True))
    with pytest.raises(DataError, match=r"NpzRecords.*images are \(6, 6, 1\) but "
                                        r"config.data.image_shape = \(8, 8, 1\)"):
        load_dataset(data_spec(config, num_classes=3), seed=0, num_classes=3)
    config.image_shape = (6, 6, 1)
    splits = load_dataset(data_spec(config, num_classes=3), seed=0, num_classes=3)
    assert isinstance(splits.train, RecordDataset) and len(splits.train) == 50
    assert splits.test.images.shape == (4, 6, 6, 1)
