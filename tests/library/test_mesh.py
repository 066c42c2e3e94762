"""parallel.make_mesh builds an ordinary (Auto) mesh: our arrays combine with a user's."""

import jax
import jax.numpy as jnp
import numpy as np
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
