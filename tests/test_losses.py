import difflib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import losses


def test_squared_error_is_half_sum_of_squares():
    assert float(losses.squared_error(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0]))) == 2.5


def test_softmax_cross_entropy_matches_log_softmax_and_is_stable():
    z = jnp.array([2.0, -1.0, 0.5])
    expected = -jax.nn.log_softmax(z)[2]
    np.testing.assert_allclose(losses.softmax_cross_entropy(z, 2), expected, rtol=1e-6)
    # huge logits: a naive exp() would overflow to inf/nan
    big = jnp.array([1000.0, 0.0, -1000.0])
    assert float(losses.softmax_cross_entropy(big, 0)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.softmax_cross_entropy(big, 1)) == pytest.approx(1000.0, rel=1e-6)


@pytest.mark.parametrize("z", [-800.0, -3.0, 0.0, 2.5, 800.0])
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_binary_cross_entropy_stable_from_logit(z, t):
    value = float(losses.binary_cross_entropy(jnp.array([z]), jnp.array(t)))
    p = 1.0 / (1.0 + np.exp(-np.float64(z))) if abs(z) < 50 else None
    if p is not None:
        assert value == pytest.approx(-(t * np.log(p) + (1 - t) * np.log(1 - p)), rel=1e-5)
    else:  # the correct side costs ~0, the wrong side costs |z|
        wrong = (z > 0) != (t == 1.0)
        assert value == pytest.approx(abs(z) if wrong else 0.0, abs=1e-4)
    assert np.isfinite(value)


def test_binary_hinge_and_perceptron_criterion():
    # t=1 -> s=+1; t=0 -> s=-1
    assert float(losses.binary_hinge(jnp.array([0.3]), 1.0)) == pytest.approx(0.7)
    assert float(losses.binary_hinge(jnp.array([0.3]), 0.0)) == pytest.approx(1.3)
    assert float(losses.binary_hinge(jnp.array([2.0]), 1.0)) == 0.0
    assert float(losses.perceptron_criterion(jnp.array([0.3]), 1.0)) == 0.0
    assert float(losses.perceptron_criterion(jnp.array([0.3]), 0.0)) == pytest.approx(0.3)


def test_multiclass_hinge_weston_watkins():
    # cs231n's example: scores (3.2, 5.1, -1.7), correct class 0 -> 2.9 + 0 = 2.9
    z = jnp.array([3.2, 5.1, -1.7])
    assert float(losses.multiclass_hinge(z, 0)) == pytest.approx(2.9, rel=1e-6)
    assert float(losses.multiclass_hinge(jnp.array([1.3, 4.9, 2.0]), 1)) == 0.0


def test_zero_one_and_accuracy_for_multiclass_and_binary():
    assert float(losses.zero_one(jnp.array([0.1, 2.0, -1.0]), 1)) == 0.0
    assert float(losses.zero_one(jnp.array([0.1, 2.0, -1.0]), 0)) == 1.0
    assert float(losses.zero_one(jnp.array([0.2]), 1)) == 0.0
    assert float(losses.zero_one(jnp.array([-0.2]), 1)) == 1.0
    assert float(losses.accuracy(jnp.array([-0.2]), 0)) == 1.0


def test_losses_vmap_over_batch():
    z = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
    t = jnp.array([0, 1, 2, 3, 0])
    per_example = jax.vmap(losses.softmax_cross_entropy)(z, t)
    assert per_example.shape == (5,)
    np.testing.assert_allclose(per_example, losses.softmax_cross_entropy(z, t), rtol=1e-6)


def test_unknown_loss_lists_close_matches():
    with pytest.raises(KeyError, match="did you mean 'softmax_cross_entropy'"):
        losses.get_loss("softmax_crossentropy")


def _unknown_loss_message(name):
    with pytest.raises(KeyError) as info:
        losses.get_loss(name)
    return info.value.args[0]


def test_unknown_loss_message_suggests_at_most_three_names_similar_by_at_least_0_4():
    """The hint lists up to three registered names, best first, whose difflib similarity
    2·matches / (len(a) + len(b)) is at least 0.4, joined by ", "; with none it is left out.
    "hinge" shares its 5 letters with binary_hinge (10/17 = 0.59) and multiclass_hinge
    (10/21 = 0.48): both are offered although under difflib's default cutoff of 0.6. For
    "class_entropy" four names pass 0.4 (the three cross-entropies and multiclass_hinge)
    but only the best three are listed."""
    known = "(known: " + ", ".join(losses.LOSSES) + ")"
    assert known.startswith("(known: squared_error, binary_cross_entropy, softmax_cross")
    assert _unknown_loss_message("hinge") == (
        f"unknown loss 'hinge' — did you mean 'binary_hinge', 'multiclass_hinge'? {known}"
    )
    fourth = difflib.SequenceMatcher(None, "class_entropy", "multiclass_hinge").ratio()
    assert 0.4 < fourth < 0.6  # a fourth candidate the limit of three leaves out
    assert _unknown_loss_message("class_entropy") == (
        "unknown loss 'class_entropy' — did you mean 'binary_cross_entropy', "
        f"'softmax_cross_entropy', 'sequence_cross_entropy'? {known}"
    )
    assert _unknown_loss_message("zzz") == f"unknown loss 'zzz' {known}"


def test_bernoulli_nll_sums_the_per_pixel_log_likelihoods():
    z = jnp.array([[2.0, -1.0], [0.5, -30.0]])
    t = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    p = 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))
    expected = -np.sum(np.where(np.asarray(t) == 1, np.log(p), np.log1p(-p)))
    np.testing.assert_allclose(losses.bernoulli_nll(z, t), expected, rtol=1e-6)
    # a uniform model (all logits 0) costs exactly 1 bit per pixel
    bits = losses.bernoulli_nll(jnp.zeros((3, 3, 1)), jnp.ones((3, 3, 1))) / (9 * np.log(2))
    np.testing.assert_allclose(bits, 1.0, rtol=1e-6)


def test_bernoulli_nll_computes_in_the_logits_dtype():
    """float32 targets do not promote bfloat16 logits: the loss stays bfloat16."""
    z = np.array([1.0, -2.0, 0.5, 3.0])  # exact in bfloat16
    t = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    loss = losses.bernoulli_nll(jnp.asarray(z, jnp.bfloat16), t)
    assert loss.dtype == jnp.bfloat16
    np.testing.assert_allclose(float(loss), np.sum(np.logaddexp(0.0, z) - t * z), rtol=2e-2)


def test_negative_log_likelihood_ignores_the_target_and_random_targets_fit_each_kind():
    assert float(losses.negative_log_likelihood(jnp.array(-3.5), jnp.array(7.0))) == 3.5
    key = jax.random.PRNGKey(0)
    none = losses.random_targets("negative_log_likelihood", key, jnp.ones((4,)))
    assert none.shape == (4,) and not np.any(np.asarray(none))
    pixels = losses.random_targets("bernoulli_nll", key, jnp.ones((4, 3, 3, 1)))
    assert pixels.shape == (4, 3, 3, 1) and set(np.unique(np.asarray(pixels))) == {0.0, 1.0}


# --- every registered loss against its lecture formula, in NumPy float64 ---------------------
#
# Written from the lecture's definitions (seed 004 §2.3, seed 003, Lecture 15), one example at
# a time, with σ(z) = 1 / (1 + e^-z) and softmax computed directly: no shared code with the
# stable forms in jaxnets.losses. Inputs are of order 1, so the direct forms are accurate.


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _np_softmax_ce(z, t):
    p = np.exp(z) / np.sum(np.exp(z))
    return -np.log(p[t])


def _np_sequence(per_step, z, t):
    """Mean over the valid steps (t >= 0) of per_step(z_s, t_s); 0 with none valid."""
    valid = [s for s in range(len(t)) if t[s] >= 0]
    return sum(per_step(z[s], t[s]) for s in valid) / len(valid) if valid else 0.0


def _np_multiclass_hinge(z, t, margin=1.0):
    return sum(max(0.0, z[j] - z[t] + margin) for j in range(len(z)) if j != t)


def _np_zero_one(z, t):
    prediction = int(np.argmax(z)) if z.size > 1 else int(z.reshape(()) > 0)
    return float(prediction != int(t))


NUMPY_LOSSES = {
    "squared_error": lambda y, t: 0.5 * np.sum((y - t) ** 2),
    "binary_cross_entropy": lambda z, t: (
        -(t * np.log(_sigmoid(z)) + (1 - t) * np.log(1 - _sigmoid(z))).sum()
    ),
    "softmax_cross_entropy": _np_softmax_ce,
    "sequence_cross_entropy": lambda z, t: _np_sequence(_np_softmax_ce, z, t),
    "bernoulli_nll": lambda z, t: (
        -np.sum(t * np.log(_sigmoid(z)) + (1 - t) * np.log(1 - _sigmoid(z)))
    ),
    "negative_log_likelihood": lambda log_p, t: -np.sum(log_p),
    "binary_hinge": lambda z, t: max(0.0, 1.0 - (2 * t - 1) * z.sum()),
    "multiclass_hinge": _np_multiclass_hinge,
    "perceptron_criterion": lambda z, t: max(0.0, -(2 * t - 1) * z.sum()),
}


def _batch(target, output_shape, rng, batch=6):
    """Outputs of order 1 (away from ties and hinge corners) and a target of each kind."""
    z = rng.normal(0.0, 1.5, (batch, *output_shape))
    if target == "class":
        return z, rng.permutation(np.arange(batch) % output_shape[-1])
    if target == "sequence":
        t = rng.integers(0, output_shape[-1], (batch, output_shape[0]))
        t[0, 1:] = -1  # padded tails, and one sequence with no valid step
        t[1, -1] = -1
        t[2, :] = -1
        z[0, 0, t[0, 0]] += 10.0  # the lone valid step of sequence 0 is right: accuracy 1
        return z, t
    if target == "binary":
        return z, (np.arange(batch) % 2).astype(np.float64)
    if target == "binary_array":
        return z, rng.integers(0, 2, z.shape).astype(np.float64)
    return z, rng.normal(size=z.shape)  # real; ignored by "none"


def _per_example(fn, z, t):
    """fn vmapped over the batch in float64, as the trainer applies a loss."""
    with jax.enable_x64(True):
        return np.asarray(jax.vmap(fn)(jnp.asarray(z), jnp.asarray(t)))


# name -> the per-example output shapes tested (binary logits as (1,) and as ())
OUTPUT_SHAPES = {
    "squared_error": [(3,)],
    "binary_cross_entropy": [(1,), ()],
    "softmax_cross_entropy": [(4,)],
    "sequence_cross_entropy": [(5, 4)],
    "bernoulli_nll": [(2, 3)],
    "negative_log_likelihood": [(), (1,)],
    "binary_hinge": [(1,), ()],
    "multiclass_hinge": [(4,)],
    "perceptron_criterion": [(1,), ()],
}


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_every_loss_and_its_accuracy_equal_the_numpy_formula_per_example(name):
    """Each loss, vmapped over a batch as the trainer does, equals its lecture formula per
    example; so does the accuracy the spec pairs with it (per valid step for sequences)."""
    assert set(OUTPUT_SHAPES) == set(losses.LOSSES)
    spec = losses.get_loss(name)
    rng = np.random.default_rng(len(name))
    for shape in OUTPUT_SHAPES[name]:
        z, t = _batch(spec.target, shape, rng)
        got = _per_example(spec.fn, z, t)
        want = [NUMPY_LOSSES[name](z[i], t[i]) for i in range(len(z))]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"{name} {shape}")
        if spec.target in ("class", "binary", "sequence"):  # the ones with an accuracy
            got_accuracy = _per_example(spec.accuracy, z, t)
        if spec.target == "sequence":
            right = [
                _np_sequence(lambda zs, ts: float(np.argmax(zs) == ts), *zt)
                for zt in zip(z, t, strict=True)
            ]
            np.testing.assert_allclose(got_accuracy, right, rtol=1e-12)
        elif spec.target in ("class", "binary"):
            wrong = [_np_zero_one(z[i], t[i]) for i in range(len(z))]
            np.testing.assert_array_equal(got_accuracy, 1.0 - np.asarray(wrong))
            assert 0 < np.mean(wrong) < 1  # both right and wrong examples were checked


def test_multiclass_hinge_margin_is_the_weston_watkins_delta():
    """The margin Δ enters every term: Σ_{j≠t} max(0, z_j − z_t + Δ), checked at several Δ."""
    z, t = _batch("class", (5,), np.random.default_rng(1))
    for margin in (0.25, 2.0):
        hinge = functools.partial(losses.multiclass_hinge, margin=margin)
        got = _per_example(hinge, z, t)
        want = [_np_multiclass_hinge(z[i], t[i], margin) for i in range(len(z))]
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"margin {margin}")


def test_the_classification_losses_are_those_whose_target_is_a_label():
    """The trainer reports accuracy exactly for the classifiers' losses (lecture: logistic,
    softmax, hinge, perceptron; and per-step classes for sequences)."""
    classifiers = {
        "binary_cross_entropy",
        "softmax_cross_entropy",
        "sequence_cross_entropy",
        "binary_hinge",
        "multiclass_hinge",
        "perceptron_criterion",
    }
    assert {n for n, spec in losses.LOSSES.items() if spec.is_classification} == classifiers


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_random_targets_are_valid_targets_of_each_loss(name):
    """random_targets (used by the gradient checks of every model) draws targets of the loss's
    kind: every class / label value, the outputs' dtype for real-valued ones, N(0, 1) reals."""
    spec = losses.get_loss(name)
    batch, shape = 64, OUTPUT_SHAPES[name][0]
    outputs = jnp.ones((batch, *shape), jnp.float16)  # not a default dtype
    t = losses.random_targets(name, jax.random.PRNGKey(3), outputs)
    values = set(np.unique(np.asarray(t, np.float64)).tolist())
    if spec.target in ("class", "sequence"):
        assert t.shape == outputs.shape[:-1] and jnp.issubdtype(t.dtype, jnp.integer)
        assert values == set(range(shape[-1]))
    elif spec.target in ("binary", "binary_array"):
        assert t.shape == (outputs.shape if spec.target == "binary_array" else (batch,))
        assert t.dtype == outputs.dtype and values == {0.0, 1.0}
    elif spec.target == "none":
        assert t.shape == (batch,) and t.dtype == outputs.dtype and values == {0.0}
    else:
        assert spec.target == "real" and t.shape == outputs.shape and t.dtype == outputs.dtype
        sample = np.asarray(t, np.float64)
        assert abs(sample.mean()) < 0.3 and 0.8 < sample.std() < 1.2
    assert np.all(np.isfinite(np.asarray(jax.vmap(spec.fn)(outputs, t), np.float64)))


# the losses written with last-axis operations, and the per-example output shape they take
BROADCASTING = {
    "squared_error": (3,),
    "binary_cross_entropy": (1,),
    "softmax_cross_entropy": (4,),
    "binary_hinge": (1,),
    "multiclass_hinge": (4,),
    "perceptron_criterion": (1,),
}


@pytest.mark.parametrize("batch_shape", [(1,), (5,), (2, 1)])
def test_losses_broadcast_over_leading_batch_axes(batch_shape):
    """Called on a whole batch (no vmap), each last-axis loss and its accuracy give the
    per-example values of the NumPy formulas with the batch's shape: a batch of one, and two
    leading axes the second of which has size 1 (say 2 sequences of 1 step), included. A
    squeeze of every unit axis, not just the last, would go unseen with a batch of one (its
    () broadcasts back against the (1,) targets) but turns (2, 1) into a (2, 2) table of
    every output against every target."""
    rng = np.random.default_rng(len(batch_shape) * 10 + batch_shape[0])
    batch = int(np.prod(batch_shape))
    for name, shape in BROADCASTING.items():
        spec = losses.get_loss(name)
        z, t = _batch(spec.target, shape, rng, batch=batch)
        zb, tb = z.reshape(*batch_shape, *shape), t.reshape(*batch_shape, *t.shape[1:])
        with jax.enable_x64(True):
            got = np.asarray(spec.fn(jnp.asarray(zb), jnp.asarray(tb)))
            if spec.target != "real":
                accuracy = np.asarray(spec.accuracy(jnp.asarray(zb), jnp.asarray(tb)))
        want = np.reshape([NUMPY_LOSSES[name](z[i], t[i]) for i in range(batch)], batch_shape)
        assert got.shape == batch_shape, name
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=name)
        if spec.target != "real":
            right = np.reshape([1.0 - _np_zero_one(z[i], t[i]) for i in range(batch)], batch_shape)
            assert accuracy.shape == batch_shape, name
            np.testing.assert_array_equal(accuracy, right, err_msg=name)


def test_class_labels_stored_as_floats_index_the_same_class():
    """Targets often come as a float array; a class index 2.0 is class 2 for every loss and
    metric that takes class labels."""
    z = jnp.array([0.3, -1.2, 2.0, 0.1])
    for fn in (losses.softmax_cross_entropy, losses.multiclass_hinge, losses.zero_one):
        for label in (0, 2):
            assert float(fn(z, float(label))) == pytest.approx(float(fn(z, label)), rel=1e-6)
    assert float(losses.multiclass_hinge(z, 2.0)) == pytest.approx(
        _np_multiclass_hinge(np.asarray(z, np.float64), 2), rel=1e-6
    )


def test_a_single_logit_of_exactly_zero_predicts_class_zero():
    """The binary prediction is z > 0: on the boundary z = 0 the classifier says 0 (the
    perceptron counts it a mistake either way: max(0, −s z) = 0 but s z <= 0)."""
    assert float(losses.zero_one(jnp.array([0.0]), 0)) == 0.0
    assert float(losses.zero_one(jnp.array(0.0), 1)) == 1.0
    assert float(losses.accuracy(jnp.array([0.0]), 0)) == 1.0


def test_zero_one_is_a_float32_scalar_argmax_for_two_or_more_classes():
    """Two logits are a two-class softmax output: the prediction is their argmax (not a
    per-logit z > 0), and like one logit or four it gives one () float32 value in {0, 1},
    whatever the logits' dtype (bfloat16, or float64 with x64 on)."""
    cases = [  # (logits, label), both signs of the logits so "z > 0" is not the argmax
        ([-0.5, -2.0], 0),
        ([-0.5, -2.0], 1),
        ([1.5, 3.0], 1),
        ([0.25], 1),
        ([0.5, -1.0, 2.0, 0.0], 2),
        ([0.5, -1.0, 2.0, 0.0], 0),
    ]
    with jax.enable_x64(True):
        for dtype in (jnp.bfloat16, jnp.float64):
            for z, label in cases:
                got = losses.zero_one(jnp.asarray(z, dtype), label)
                assert got.shape == () and got.dtype == jnp.float32, (z, dtype)
                assert float(got) == _np_zero_one(np.asarray(z), label), (z, label, dtype)
