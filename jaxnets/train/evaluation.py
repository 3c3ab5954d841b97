"""A Trainer's evaluation: mean loss and accuracy over a data set in chunks, on one device
or a mesh, and predictions (seed 004 §12, line 2500: validation and test error)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.train.objective import metric_sums, model_outputs
from jaxnets.train.state import TrainState

__all__ = ["Evaluation"]


class Evaluation:
    """Mixin of :class:`~jaxnets.train.Trainer`: :meth:`evaluate`, its pure form and
    :attr:`predict` (they read the Trainer's model, loss, mesh and placement)."""

    @staticmethod
    def _padded(x: jax.Array, y: jax.Array, batch_size: int):
        """x, y zero-padded to whole chunks, and a (chunks * batch_size,) 0/1 weight."""
        n = x.shape[0]
        num_chunks = -(-n // batch_size)
        pad = num_chunks * batch_size - n
        x_pad = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
        y_pad = jnp.concatenate([y, jnp.zeros((pad, *y.shape[1:]), y.dtype)])
        weight = (jnp.arange(num_chunks * batch_size) < n).astype(jnp.float32)
        return x_pad, y_pad, weight, num_chunks

    def _chunk_sums(self, state: TrainState, padded, i: jax.Array, batch_size: int):
        """Summed loss (and accuracy) over chunk ``i`` of the padded data, padding excluded."""
        x_pad, y_pad, weight = padded
        sl = lambda a: jax.lax.dynamic_slice_in_dim(a, i * batch_size, batch_size)  # noqa: E731
        return self._weighted_sums(state, sl(x_pad), sl(y_pad), sl(weight))

    def _weighted_sums(self, state: TrainState, xb: jax.Array, yb: jax.Array, wb: jax.Array):
        """Loss (and accuracy) summed over a chunk xb (chunk, ...) with 0/1 weights wb."""
        if self.mesh is not None:
            state, (xb, yb) = self.constrain(state, (xb, yb))
        with self.kernels_for_mesh():
            outputs, _ = model_outputs(
                self.model, state.params, state.model_state, xb, state.rng, train=False
            )
        return metric_sums(self.loss, outputs, yb, wb)

    def pure_evaluate(self, state: TrainState, x: jax.Array, y: jax.Array, batch_size: int):
        """The pure, unjitted :meth:`evaluate` on data held by the device: a ``lax.map`` over
        chunks; compose it under ``vmap`` (ensembles) or ``jit``."""
        x_pad, y_pad, weight, num_chunks = self._padded(x, y, batch_size)
        sums = jax.lax.map(
            lambda i: self._chunk_sums(state, (x_pad, y_pad, weight), i, batch_size),
            jnp.arange(num_chunks),
        )
        return {k: jnp.sum(v) / x.shape[0] for k, v in sums.items()}

    @functools.cached_property
    def _scan_evaluate(self):
        return jax.jit(self.pure_evaluate, static_argnames="batch_size")

    def _mesh_evaluate(self, state: TrainState, x: Any, y: Any, batch_size: int):
        """Evaluation on the mesh: chunks of ``batch_size`` rounded up to whole multiples of the
        data axis, laid out (chunks, chunk, ...) and split along the chunk axis."""
        x, y, n, devices = np.asarray(x), np.asarray(y), len(x), self.data_devices
        chunk = -(-batch_size // devices) * devices
        positions = np.arange(-(-n // chunk) * chunk).reshape(-1, chunk)
        rows = np.minimum(positions, n - 1)  # padding repeats the last example, weight 0
        weight = (np.arange(positions.size) < n).astype(np.float32)

        def put(i=slice(None)):
            return (*self.put_rows((x, y), rows[i]), *self.put_rows((weight,), positions[i]))

        if self.uses_python_loops(x):
            chunks = [self._jitted_weighted_sums(state, *put(i)) for i in range(len(rows))]
            return {k: sum(c[k] for c in chunks) / n for k in chunks[0]}  # as _python_evaluate
        return self._jitted_chunked_means(state, *put(), n)

    @functools.cached_property
    def _jitted_weighted_sums(self):
        return jax.jit(self._weighted_sums)

    @functools.cached_property
    def _jitted_chunked_means(self):
        def chunked(state, xs, ys, ws, n):
            sums = jax.lax.map(lambda c: self._weighted_sums(state, *c), (xs, ys, ws))
            # divided inside the program, as pure_evaluate does: XLA turns a division by a
            # constant into a product with its reciprocal, which rounds differently from an
            # eager division, so both paths must divide the same way to agree bit for bit
            return {k: jnp.sum(v) / n for k, v in sums.items()}

        return jax.jit(chunked, static_argnums=4)

    @functools.cached_property
    def _jitted_chunk_sums(self):
        return jax.jit(self._chunk_sums, static_argnames="batch_size")

    def _python_evaluate(self, state: TrainState, x: jax.Array, y: jax.Array, batch_size: int):
        x_pad, y_pad, weight, num_chunks = self._padded(jnp.asarray(x), jnp.asarray(y), batch_size)
        chunks = [
            self._jitted_chunk_sums(state, (x_pad, y_pad, weight), i, batch_size=batch_size)
            for i in range(num_chunks)
        ]
        return {k: sum(c[k] for c in chunks) / x.shape[0] for k in chunks[0]}

    def evaluate(self, state: TrainState, x: jax.Array, y: jax.Array, *, batch_size: int):
        """``(state, x, y, batch_size) -> metrics``: mean loss (and accuracy) over all n examples,
        computed in chunks of ``batch_size`` in evaluation mode (``train=False``); compiled as
        one ``lax.map`` (which ``vmap`` can batch over ensemble members) or, for convolutional
        models on the CPU, a Python loop over a jitted chunk (see ``epoch_mode``). The data
        are checked first (:meth:`check_data`)."""
        self.check_data(x, y, state=state, batch_size=batch_size, name="evaluation")
        if self.mesh is not None:
            return self._mesh_evaluate(state, x, y, batch_size)
        if self.uses_python_loops(x):
            return self._python_evaluate(state, x, y, batch_size)
        return self._scan_evaluate(state, x, y, batch_size=batch_size)

    @functools.cached_property
    def predict(self):
        """``(state, x) -> outputs`` (batch, ...) in evaluation mode."""

        def _predict(state, x):
            return model_outputs(
                self.model, state.params, state.model_state, x, state.rng, train=False
            )[0]

        return jax.jit(_predict)
