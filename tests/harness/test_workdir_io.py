"""Every file a run writes in its workdir goes through etils.epath (so gs:// workdirs work):
the run is made under epath's mock, which records each file opened, renamed or replaced."""

import sys

from etils import epath
from test_config import ROOT

from mmix_jax.harness import runs

sys.path.insert(0, str(ROOT / "configs"))
import default  # noqa: E402  (configs/default.py)


def test_a_run_writes_every_workdir_file_through_epath(tmp_path):
    config = default.get_config("manifold")
    config.update(dict(num_epochs=2, batch_size=10, log_every_steps=20, tensorboard=False))
    config.data.num_train = 200
    config.optimizer.milestones = ()
    touched = set()

    def record(original, path, *args, **kwargs):
        touched.add(str(path))
        return original(path, *args, **kwargs)

    with epath.testing.mock_epath(open=record, replace=record, rename=record):
        runs.run(config, tmp_path)
    written = {str(p) for p in tmp_path.rglob("*") if p.is_file()}
    ours = {p for p in written if "/checkpoints/" not in p}  # Orbax's own files: epath too
    expected = {"summary.json", "decision_boundaries.png", "manifold/summary.json",
                "manifold/config.json", "manifold/history.json", "manifold/evaluation.json"}
    assert {str(tmp_path / name) for name in expected} <= ours, sorted(ours)
    through_epath = {p for p in touched if not p.endswith(".partial")} | {
        p[:-len(".partial")] for p in touched if p.endswith(".partial")}
    assert ours <= through_epath, sorted(ours - through_epath)
    assert any("/checkpoints/" in p for p in touched)  # Orbax writes through epath as well
