"""parallel.make_mesh builds an ordinary (Auto) mesh: our arrays combine with a user's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mmix_jax import parallel


def test_arrays_on_our_mesh_combine_with_arrays_on_a_users_mesh():
    ours = parallel.make_mesh()
    assert all(t == jax.sharding.AxisType.Auto for t in ours.axis_types)
    theirs = Mesh(np.array(jax.devices()), ("data",))  # what a user writes
    a = parallel.replicate(jnp.arange(4.0), ours)
    b = jax.device_put(jnp.ones(4), NamedSharding(theirs, P()))
    np.testing.assert_array_equal(jax.jit(lambda x, y: x + y)(a, b), np.arange(4.0) + 1)


def test_a_batch_that_leaves_a_device_one_example_to_mix_is_refused():
    mesh = parallel.make_mesh()
    devices = mesh.devices.size
    parallel.check_divisible(devices, mesh)  # one each: fine without mixing
    with pytest.raises(ValueError, match=f"gives 1 example.s. per device on {devices} devices"):
        parallel.check_divisible(devices, mesh, per_device=2)
    parallel.check_divisible(2 * devices, mesh, per_device=2)
