"""Layer tables of recurrent nets (jaxnets.inspect): the unrolled network of seed 004,
Lecture 13 §2 (line 2765), counted against hand counts from the layer sizes and the number of
steps, against every registered rnn-family model's parameter count, and against XLA's own FLOP
count of the unrolled program."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxnets import create_model, list_models, model_card
from jaxnets.inspect import layer_table
from jaxnets.models.rnn import SequenceModel

_RNN_MODELS = [name for name in list_models() if model_card(name).family == "rnn"]


def _parameters(model, input_shape, dtype=jnp.float32):
    x = jax.ShapeDtypeStruct((1, *input_shape), dtype)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]


def test_every_registered_family_is_covered():
    assert {"rnn_classifier", "lstm_regressor", "gru_classifier", "char_lm", "seq2seq"} <= set(
        _RNN_MODELS
    )


@pytest.mark.parametrize("name", _RNN_MODELS)
def test_weights_plus_biases_is_the_parameter_count(name):
    card = model_card(name)
    model, dtype = create_model(name), jnp.dtype(card.input_dtype)
    params = _parameters(model, card.input_shape, dtype)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    biases = sum(a.size for path, a in leaves if str(path[-1].key).endswith("bias"))
    table = layer_table(model, card.input_shape, dtype=dtype)
    assert table.weights + table.biases == sum(a.size for _, a in leaves)
    assert table.biases == biases
    recurrent = [r for r in table.rows if r.kind == "recurrent"]
    hidden_to_hidden = [a for path, a in leaves if path[-1].key == "hidden_to_hidden"]
    assert sorted(r.weights for r in recurrent) == sorted(a.size for a in hidden_to_hidden)


def _hand_count(cell, time, features, hidden, outputs):
    """(name, kind, output shape, units, connections, weights, biases, forward FLOPs) of a
    one-layer SequenceModel, from the lecture's unrolled network: the input projection makes
    F x G·H connections per step, the recurrence H x G·H per step with its weights shared."""
    gates, cell_bias = {"rnn": (1, 0), "lstm": (4, 0), "gru": (3, 3 * hidden)}[cell]
    projected = gates * hidden
    return [
        (
            "recurrent/cell/input_to_hidden",
            "fully connected",
            (time, projected),
            time * projected,
            time * features * projected,
            features * projected,
            projected,
            2 * time * features * projected + time * projected,
        ),
        (
            "recurrent",
            "recurrent",
            (time, hidden),
            time * hidden,
            time * hidden * projected,
            hidden * projected,
            cell_bias,
            2 * time * hidden * projected + time * cell_bias,
        ),
        (
            "readout",
            "fully connected",
            (outputs,),
            outputs,
            hidden * outputs,
            hidden * outputs,
            outputs,
            2 * hidden * outputs + outputs,
        ),
    ]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sequence_models_equal_a_hand_count_of_the_unrolled_network(cell):
    time, features, hidden, outputs = 7, 3, 5, 2
    model = SequenceModel(cell=cell, hidden=hidden, outputs=outputs)
    table = layer_table(model, (time, features))
    columns = ("name", "kind", "output_shape", "units", "connections", "weights", "biases")
    got = [tuple(getattr(r, c) for c in (*columns, "forward_flops")) for r in table.rows]
    assert got == _hand_count(cell, time, features, hidden, outputs)
    params = _parameters(model, (time, features))
    assert table.parameters == sum(a.size for a in jax.tree.leaves(params))
    # the projection is per step; the recurrent state at the last step has seen every step
    fields = [(r.receptive_field, r.field_stride, r.whole_input) for r in table.rows]
    whole = ((time,), (None,), (True,))
    assert fields == [((1,), (1,), (False,)), whole, whole]
    unrolled = SequenceModel(cell=cell, hidden=hidden, outputs=outputs, unroll=True)
    assert layer_table(unrolled, (time, features)).rows == table.rows


def test_the_summary_line_counts_every_parameter_of_an_lstm():
    time, hidden, outputs = 20, 64, 2
    table = layer_table(SequenceModel(cell="lstm", hidden=hidden, outputs=outputs), (time, 1))
    weights = 4 * hidden + hidden * 4 * hidden + hidden * outputs
    biases = 4 * hidden + outputs
    summary = str(table).splitlines()[-1]
    assert f"{weights + biases:,} parameters ({weights:,} weights + {biases:,} biases)" in summary
    assert weights + biases == 17_026  # lstm_classifier's parameter listing


def _unrolled_xla_flops(model, input_shape):
    """XLA's count of the program as lowered, before optimisation: XLA counts a while loop's
    body once, and after fusion it recomputes the hoisted projection's bias add in each step."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    apply = jax.jit(lambda v, x: model.apply(v, x))
    with jax.default_device(jax.devices("cpu")[0]):
        cost = apply.lower({"params": _parameters(model, input_shape)}, x).cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


def test_elman_forward_flops_agree_with_xla_on_the_unrolled_program():
    time, features, hidden, outputs = 9, 3, 6, 4
    model = SequenceModel(cell="rnn", hidden=hidden, outputs=outputs, unroll=True)
    table = layer_table(model, (time, features))
    projection = 2 * time * features * hidden + time * hidden  # with its bias
    recurrence = 2 * time * hidden * hidden  # every step
    readout = 2 * hidden * outputs + outputs
    by_hand = projection + recurrence + readout
    assert table.forward_flops == by_hand
    # XLA also counts the add joining x_t U + b and h_(t-1) W: H per step (tanh is no flop)
    assert _unrolled_xla_flops(model, (time, features)) == by_hand + time * hidden


def test_seq2seq_counts_encoder_and_decoder_steps_separately():
    source, target, hidden = 4, 3, 5
    model = create_model("seq2seq", source_length=source, hidden=hidden, embed=2)
    table = layer_table(model, (source + target,), dtype=jnp.int32)
    recurrent = {r.name: (r.units, r.connections) for r in table.rows if r.kind == "recurrent"}
    per_step = hidden * 4 * hidden
    assert recurrent == {
        "encoder": (source * hidden, source * per_step),
        "decoder": (target * hidden, target * per_step),
    }


class _NestedLoops(nn.Module):
    """h <- tanh(h W), 4 times inside a loop that runs 3 times: 12 steps with one W."""

    @nn.compact
    def __call__(self, x):
        w = self.param("w", nn.initializers.orthogonal(), (x.shape[-1], x.shape[-1]))

        def inner(h, _):
            return jnp.tanh(h @ w), None

        def outer(h, _):
            return jax.lax.scan(inner, h, None, length=4)[0], None

        return jax.lax.scan(outer, x, None, length=3)[0]


def test_nested_scans_multiply():
    (row,) = layer_table(_NestedLoops(), (5,)).rows
    assert (row.kind, row.units, row.weights) == ("recurrent", 5, 25)
    assert row.connections == 3 * 4 * 25 and row.forward_flops == 2 * row.connections
    assert math.prod(row.output_shape) == row.units
