"""Per-layer tables (jaxnets.inspect): Lecture 10's Table 1 for LeNet-5, receptive fields
against the chain recursion and against measured gradients, FLOPs against XLA's own count."""

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import native
from jaxnets.inspect import layer_table
from jaxnets.models.cnn import LeNet5
from jaxnets.models.mlp import MLP
from jaxnets.nn.conv import Pool, pool
from jaxnets.registry import InputSpecError


class Chain(nn.Module):
    """Padding, max pooling, dilation, a non-square strided kernel, then a dense layer."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(3, (3, 3), padding="SAME", name="a")(x))
        h = Pool("max", 3, 2, padding="same", name="pool")(h)
        h = nn.relu(nn.Conv(3, (3, 3), kernel_dilation=2, padding="SAME", name="b")(h))
        h = nn.relu(nn.Conv(3, (5, 3), strides=2, padding="VALID", name="c")(h))
        return nn.Dense(2, name="d")(h.reshape(h.shape[0], -1))


class Branchy(nn.Module):
    """Two parallel convolutions joined by concatenation, then a residual shortcut."""

    @nn.compact
    def __call__(self, x):
        square = nn.Conv(2, (5, 5), padding="SAME", name="square")(x)
        wide = nn.Conv(2, (1, 7), padding="SAME", name="wide")(x)
        h = nn.relu(jnp.concatenate([square, wide], axis=-1))
        h = nn.Conv(1, (3, 3), padding="SAME", name="mix")(h) + x[..., :1]
        return nn.Conv(1, (3, 3), strides=2, padding="VALID", name="out")(h)


class UpDown(nn.Module):
    """A strided convolution undone by a transposed one (input dilation), then zero padding."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(2, (3, 3), strides=2, padding="VALID", name="down")(x))
        h = nn.relu(nn.ConvTranspose(2, (3, 3), strides=(2, 2), padding="SAME", name="up")(h))
        h = jnp.pad(h, ((0, 0), (2, 1), (0, 0), (0, 0)))
        return nn.Conv(1, (3, 3), padding="VALID", name="after")(h)


class SmallConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(8, (3, 3), padding="VALID", name="c1")(x))
        h = Pool("max", 2, 2, name="p1")(h)
        h = nn.relu(nn.Conv(16, (3, 3), strides=2, padding="VALID", name="c2")(h))
        h = nn.BatchNorm(use_running_average=True, name="bn")(h)
        return nn.Dense(10, name="out")(h.reshape(h.shape[0], -1))


class Shared(nn.Module):
    @nn.compact
    def __call__(self, x):
        layer = nn.Dense(5, name="shared")
        return nn.Dense(3, name="head")(layer(nn.tanh(layer(x))))


def _abstract_init(model, input_shape):
    """The variables' shapes and dtypes: nothing here needs their random values."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), x)


def test_lenet5_reproduces_table_1_of_lecture_10():
    table = layer_table(LeNet5(), (32, 32, 1))
    got = [(r.name, r.kind, r.units, r.connections, r.weights) for r in table.rows]
    assert got == [
        ("C1", "convolution", 4704, 117_600, 150),
        ("S2", "subsampling", 1176, 4704, 0),
        ("C3", "convolution", 1600, 240_000, 2400),
        ("S4", "subsampling", 400, 1600, 0),
        ("F5", "fully connected", 120, 48_000, 48_000),
        ("F6", "fully connected", 84, 10_080, 10_080),
        ("output", "fully connected", 10, 840, 840),
    ]
    assert [r.biases for r in table.rows] == [6, 0, 16, 0, 120, 84, 10]
    assert [r.output_shape for r in table.rows][:2] == [(28, 28, 6), (14, 14, 6)]
    text = str(table)
    assert "117,600" in text and "240,000" in text and "48,000" in text
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert total.split()[1:5] == ["8,094", "422,824", "61,470", "236"]
    markdown = table.to_markdown()
    assert "| C1 | convolution | 28x28x6 | 4,704 | 117,600 | 150 | 6 |" in markdown


def test_lenet5_receptive_fields_follow_the_recursion():
    # r_l = r_(l-1) + (k_l - 1) j_(l-1): C1 5, S2 5 + 1 = 6, C3 6 + 4 * 2 = 14, S4 14 + 2 = 16,
    # F5 sees the 5x5 map of S4 (j = 4): 16 + 4 * 4 = 32, the whole input.
    rows = layer_table(LeNet5(), (32, 32, 1)).rows
    assert [r.receptive_field for r in rows] == [(5, 5), (6, 6), (14, 14), (16, 16)] + [
        (32, 32)
    ] * 3
    assert [r.whole_input for r in rows] == [(False, False)] * 4 + [(True, True)] * 3
    assert [r.field_stride for r in rows] == [(1, 1), (2, 2), (2, 2), (4, 4)] + [(None, None)] * 3
    assert "32x32 (whole input)" in str(layer_table(LeNet5(), (32, 32, 1)))


# Chain's layers: name, kernel or window extent (b: a 3x3 kernel with dilation 2 spans 5), stride
_CHAIN_LAYERS = [("a", (3, 3), 1), ("pool", (3, 3), 2), ("b", (5, 5), 1), ("c", (5, 3), 2)]


def _recursion():
    """The lecture's chain recursion r_l = r_(l-1) + (k_l - 1) j_(l-1), j_l = j_(l-1) s_l."""
    r, j, fields = np.ones(2, int), np.ones(2, int), {}
    for name, kernel, stride in _CHAIN_LAYERS:
        r, j = r + (np.array(kernel) - 1) * j, j * stride
        fields[name] = (tuple(r.tolist()), tuple(j.tolist()))
    return fields


def test_chain_receptive_fields_equal_the_recursion():
    rows = {r.name: r for r in layer_table(Chain(), (40, 40, 1)).rows}
    for name, (field, stride) in _recursion().items():
        assert rows[name].receptive_field == field and rows[name].field_stride == stride
    assert rows["c"].receptive_field == (21, 17)
    # d sees all 8x9 units of c, 4 pixels apart: 7 * 4 + 21 = 49 rows, 8 * 4 + 17 = 49 columns
    assert rows["d"].whole_input == (True, True) and rows["d"].field_stride == (None, None)


def _measured(model, input_shape):
    """Bounding box of the input pixels with a nonzero gradient of one central unit (all units,
    after flattening), with all weights positive and max pooling replaced by mean pooling so
    that nothing cancels or dies."""
    variables = jax.tree.map(lambda a: jnp.full(a.shape, 0.5), _abstract_init(model, input_shape))

    def outputs(x):
        found = {}

        def grab(next_fun, args, kwargs, context):
            module = context.module
            if isinstance(module, Pool):
                out = pool(
                    args[0], module.window, module.stride, kind="mean", padding=module.padding
                )
            else:
                out = next_fun(*args, **kwargs)
            found["/".join(module.path)] = out
            return out

        with nn.intercept_methods(grab):
            model.apply(variables, x)
        return {
            k: v[0, v.shape[1] // 2, v.shape[2] // 2].sum() if v.ndim == 4 else v.sum()
            for k, v in found.items()
        }

    grads = jax.jit(jax.jacrev(outputs))(jnp.ones((1, *input_shape)))
    boxes = {}
    for name, g in grads.items():
        hit = np.abs(np.asarray(g[0])).sum(-1) > 0
        boxes[name] = tuple(
            (
                int(np.flatnonzero(hit.any(1 - axis))[0]),
                int(np.flatnonzero(hit.any(1 - axis))[-1]) + 1,
            )
            for axis in (0, 1)
        )
    return boxes


def _predicted(row, output_shape, input_shape):
    """Input interval of the central unit of ``row`` (or of all its units once they mix)."""
    box = []
    for axis in (0, 1):
        n = input_shape[axis]
        if row.whole_input[axis]:
            box.append((0, n))
            continue
        start = row.field_start[axis]
        if row.field_stride[axis] is not None:
            start += (output_shape[axis] // 2) * row.field_stride[axis]
        box.append((max(start, 0), min(start + row.receptive_field[axis], n)))
    return tuple(box)


@pytest.mark.parametrize("model, input_shape", [(Chain(), (40, 40, 1)), (Branchy(), (20, 20, 1))])
def test_receptive_fields_agree_with_gradients(model, input_shape):
    measured = _measured(model, input_shape)
    rows = layer_table(model, input_shape).rows
    assert len(rows) >= 4
    for row in rows:
        assert _predicted(row, row.output_shape, input_shape) == measured[row.name], row.name


def test_transposed_convolutions_give_the_largest_field_of_any_unit():
    # 'up' interleaves the 3x3 fields of 'down' (2 pixels apart) at half their spacing: units
    # between two 'down' units see 5 pixels, the others 3; the central one here sees 3.
    input_shape = (20, 20, 1)
    rows = layer_table(UpDown(), input_shape).rows
    measured = _measured(UpDown(), input_shape)
    assert [(r.name, r.receptive_field, r.field_stride) for r in rows] == [
        ("down", (3, 3), (2, 2)),
        ("up", (5, 5), (1, 1)),
        ("after", (7, 7), (1, 1)),
    ]
    for row in rows:
        predicted = _predicted(row, row.output_shape, input_shape)
        for (lo, hi), (got_lo, got_hi) in zip(predicted, measured[row.name], strict=True):
            assert lo <= got_lo < got_hi <= hi, row.name


def test_branches_take_the_union_of_their_paths():
    rows = {r.name: r for r in layer_table(Branchy(), (20, 20, 1)).rows}
    assert rows["square"].receptive_field == (5, 5) and rows["wide"].receptive_field == (1, 7)
    # the concatenation sees (5, 7); a 3x3 conv adds 2 on each axis, the stride-2 one 2 more.
    # (A recursion over the call order, square -> wide -> mix -> out, would give (9, 15).)
    assert rows["mix"].receptive_field == (7, 9)
    assert rows["out"].receptive_field == (9, 11) and rows["out"].field_stride == (2, 2)


@pytest.mark.parametrize(
    "model, input_shape, expected",
    [(LeNet5(), (32, 32, 1), 61_706), (MLP(hidden=(128,), num_outputs=10), (64,), 9_610)],
)
def test_weights_plus_biases_is_the_parameter_count(model, input_shape, expected):
    params = _abstract_init(model, input_shape)["params"]
    count = sum(a.size for a in jax.tree.leaves(params))
    table = layer_table(model, input_shape)
    assert count == expected
    assert table.parameters == table.weights + table.biases == count
    assert table.units == sum(r.units for r in table.rows)
    assert layer_table(model, input_shape, variables={"params": params}).rows == table.rows


def _xla_flops(model, input_shape):
    """XLA's own count for the CPU backend (a GPU's may hide convolutions in library calls, as
    jaxnets' oneDNN kernels do on the CPU: XLA counts no flops in a custom call)."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    apply = jax.jit(lambda v, x: model.apply(v, x))
    with jax.default_device(jax.devices("cpu")[0]), native.pure_jax():
        cost = apply.lower(_abstract_init(model, input_shape), x).compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


def test_forward_flops_agree_with_xla_cost_analysis():
    # LeNet-5: valid convolutions, mean pooling (XLA: window - 1 adds and one division per unit)
    # and tanh (a transcendental, not a flop): the counts coincide.
    lenet = layer_table(LeNet5(), (32, 32, 1))
    multiply_adds = 117_600 + 240_000 + 48_000 + 10_080 + 840
    pooling, biased_units = 4704 + 1600, 4704 + 1600 + 120 + 84 + 10
    assert lenet.forward_flops == 2 * multiply_adds + pooling + biased_units == 845_862
    assert lenet.forward_flops == pytest.approx(_xla_flops(LeNet5(), (32, 32, 1)), rel=1e-3)
    # XLA also counts each ReLU, window - 1 comparisons per max-pooling unit and batch norm's
    # (x - mean) and its parameter arithmetic: about 1.3% here.
    small = layer_table(SmallConvNet(), (16, 16, 3))
    assert small.forward_flops == pytest.approx(_xla_flops(SmallConvNet(), (16, 16, 3)), rel=0.02)
    assert small.backward_flops == 2 * small.forward_flops


def test_a_layer_called_twice_shares_its_weights():
    table = layer_table(Shared(), (5,))
    got = [(r.name, r.call, r.units, r.connections, r.weights, r.biases) for r in table.rows]
    assert got == [
        ("shared", 1, 5, 25, 25, 5),
        ("shared", 2, 5, 25, 0, 0),
        ("head", 1, 3, 15, 15, 3),
    ]
    assert table.rows[1].forward_flops == 2 * 25 + 5  # the second call still adds its biases
    assert table.parameters == sum(a.size for a in jax.tree.leaves(_abstract_init(Shared(), (5,))))
    assert "shared (call 2)" in str(table)


def test_a_scanned_cell_is_counted_once_per_step():
    class Cell(nn.Module):
        @nn.compact
        def __call__(self, carry, x):
            carry = jnp.tanh(nn.Dense(4, name="recurrent")(carry) + x)
            return carry, carry

    class Recurrent(nn.Module):
        @nn.compact
        def __call__(self, xs):
            scan = nn.scan(
                Cell,
                variable_broadcast="params",
                split_rngs={"params": False},
                in_axes=1,
                out_axes=1,
            )
            return scan(name="cell")(jnp.zeros((xs.shape[0], 4)), xs)[1]

    # the unrolled network: 6 steps of a 4x4 dense layer whose 16 weights and 4 biases are shared
    rows = layer_table(Recurrent(), (6, 4)).rows
    got = [
        (r.name, r.kind, r.output_shape, r.units, r.connections, r.weights, r.biases) for r in rows
    ]
    assert got == [("cell/recurrent", "recurrent", (6, 4), 6 * 4, 6 * 16, 16, 4)]
    assert rows[0].forward_flops == 2 * 6 * 16 + 6 * 4


def test_big_models_are_never_allocated():
    # 224*224*3 inputs to 1000 outputs: 150 million parameters (600 MB if they were made).
    start = time.perf_counter()
    table = layer_table(nn.Dense(1000), (224 * 224 * 3,))
    assert time.perf_counter() - start < 5
    assert table.parameters == 224 * 224 * 3 * 1000 + 1000
    assert table.rows[0].name == "" and str(table).splitlines()[2].startswith("(Dense)")


def test_input_shape_errors_say_what_is_expected():
    with pytest.raises(InputSpecError, match=r"'C1'.*rank 3.*did you mean \(32, 32, 1\)"):
        layer_table(LeNet5(), (32, 32))
    with pytest.raises(ValueError, match="without the batch axis"):
        layer_table(LeNet5(), (32, 0, 1))
