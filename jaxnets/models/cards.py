"""Model-card fields that several families spell the same way.

The token models (the character LM and seq2seq of :mod:`jaxnets.models.rnn`, the NPLM,
WaveNet) read integer ids rather than floats; :func:`token_inputs` states that once for
:func:`jaxnets.registry.register_model`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["token_inputs"]


def token_inputs(length: int, vocab: int) -> dict[str, Any]:
    """The card fields of a model whose input is ``length`` token ids in ``[0, vocab)``:
    ``input_shape=(length,)``, ``input_dtype="int32"``, ``input_range=vocab`` (example
    inputs, e.g. those of the registry-wide tests, are drawn from that range)."""
    return {"input_shape": (length,), "input_dtype": "int32", "input_range": vocab}
