"""Registry-wide tests: every registered model, from its card's tiny config.

A model registered with ``register_model`` is picked up here automatically: it must build,
give finite outputs of the right batch size, give every parameter a gradient, pass the
float64 gradcheck, agree between jit and eager, train without recompiling, and compute
the function recorded in ``tests/fingerprints.json`` (see ``tests/fingerprints.py``; an
intended change is recorded with ``make fingerprints``).
"""

import fingerprints
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnets
from jaxnets import losses, registry
from jaxnets.gradcheck import gradcheck, model_loss_at
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer

MODELS = jaxnets.list_models()


def _distinct_tiny_models(names):
    """One name per distinct tiny model: presets whose tiny configs build the same module
    (vgg11/13/16/19 shrink to one layout, resnet18/34 too) are built and checked once."""
    first = {}
    for name in names:
        card = jaxnets.model_card(name)
        model = jaxnets.create_model(name, **card.test_config)
        key = (repr(model), card.tiny_input_shape, card.input_dtype, card.input_range, card.loss)
        first.setdefault(key, name)
    return sorted(first.values())


DISTINCT = _distinct_tiny_models(MODELS)


FINGERPRINTS = fingerprints.recorded()


def _check_fingerprint(name, key, actual):
    assert name in FINGERPRINTS, f"{name} has no recorded fingerprint: run `make fingerprints`"
    wrong = fingerprints.mismatches(name, actual, FINGERPRINTS[name][key], f"{key}.")
    assert not wrong, (
        f"{name} computes another function than the one recorded in tests/fingerprints.json: "
        + "; ".join(wrong)
        + f". If the change is intended: .venv/bin/python tests/fingerprints.py {name}"
    )


def test_registry_is_populated():
    assert len(MODELS) >= 20
    presets = {"vgg11", "vgg13", "vgg16", "vgg19"}
    assert len(presets & set(DISTINCT)) == 1 and "resnet18" in DISTINCT
    for family in ("linear", "mlp"):
        assert any(jaxnets.model_card(n).family == family for n in MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_card_is_complete(name):
    card = jaxnets.model_card(name)
    assert card.lecture and card.reference and card.description
    assert card.lecture[:3] in {"000", "001", "002", "003", "004"}, "cite the seed file"
    losses.get_loss(card.loss)  # the default loss exists


def test_every_registered_model_has_a_fingerprint_and_no_other_is_recorded():
    assert sorted(FINGERPRINTS) == MODELS, "run `make fingerprints` after (un)registering"


@pytest.mark.parametrize("name", MODELS)  # the full config differs between presets
def test_builds_with_finite_outputs_equal_to_the_recorded_fingerprint(name):
    _, _, variables, x, _, outputs = fingerprints.built(name)
    assert outputs.shape[0] == x.shape[0]
    assert bool(jnp.all(jnp.isfinite(outputs)))
    _check_fingerprint(name, "parameters", fingerprints.parameter_stats(variables))
    _check_fingerprint(name, "eval_outputs", fingerprints.output_stats(outputs))
    # the default (non-tiny) config builds too, checked by its parameter count
    assert fingerprints.full_parameter_count(name) == FINGERPRINTS[name]["full_parameters"]


@pytest.mark.parametrize("name", DISTINCT)
def test_gradcheck_float64_and_every_parameter_gets_a_gradient(name):
    loss_fn, params = model_loss_at(name)
    report = gradcheck(loss_fn, params, tol=1e-6)
    assert report.worst.rel_error < 1e-6
    # every parameter gets a gradient "somewhere": the check's own analytic gradient, then
    # (only for leaves it left at exactly zero) three more random batches of 8 (a hinge bias's
    # gradient can cancel in one batch); report.leaves is in the tree's leaf order
    unreached = {i for i, leaf in enumerate(report.leaves) if leaf.analytic_norm == 0}
    for seed in range(3):
        if not unreached:
            break
        loss_fn, params = model_loss_at(name, seed=seed, batch_size=8)
        with jax.enable_x64(True):
            grads = jax.tree.leaves(jax.jit(jax.grad(loss_fn))(params))
            unreached = {i for i in unreached if not bool(jnp.any(grads[i] != 0))}
    missing = [report.leaves[i].path for i in sorted(unreached)]
    assert not missing, f"{name}: no gradient reaches {missing}"


@pytest.mark.parametrize("name", DISTINCT)
def test_jit_equals_eager_and_the_recorded_training_mode_fingerprint(name):
    _, model, variables, x, _, _ = fingerprints.built(name)
    jitted = fingerprints.train_outputs(name, model, variables, x)
    key = {"dropout": jax.random.PRNGKey(3)}
    with jax.disable_jit():
        eager = model.apply(variables, x, train=True, rngs=key, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(jitted, eager, rtol=1e-4, atol=1e-5)
    _check_fingerprint(name, "train_outputs", fingerprints.output_stats(jitted))


@pytest.mark.parametrize("name", DISTINCT)
def test_train_step_runs_twice_without_recompiling(name):
    card, model, _, x, y, _ = fingerprints.built(name)
    trainer = Trainer(
        model, card.loss, make_optimizer("sgd", 1e-2), per_example=card.per_example_grads
    )
    state = trainer.init(jax.random.PRNGKey(0), x)
    state, first = trainer.train_step(state, (x, y))
    compiled = trainer.train_step._cache_size()
    state, second = trainer.train_step(state, (x, y))
    assert trainer.train_step._cache_size() == compiled == 1
    assert int(state.step) == 2 and np.isfinite(float(second["loss"]))


@pytest.mark.parametrize("name", MODELS)
def test_wrong_input_shape_is_named(name):
    card, *_ = fingerprints.built(name)
    wrong = np.zeros((2, *card.input_shape, 3), dtype=card.input_dtype)
    with pytest.raises(jaxnets.InputSpecError, match=f"model '{name}' expects input of shape"):
        registry.check_input(card, wrong)
    registry.check_input(card, np.zeros((2, *card.input_shape), dtype=card.input_dtype))


@pytest.mark.accelerator
@pytest.mark.parametrize("name", DISTINCT)
def test_accelerator_matches_cpu(name):
    """On a GPU/TPU: the tiny model's outputs and gradients equal the CPU's (float32)."""
    card, model, variables, x, y, _ = fingerprints.built(name)
    loss = losses.get_loss(card.loss)

    def loss_and_grad(v):
        def f(params):
            out = model.apply({**v, "params": params}, x, train=False)
            return jnp.mean(jax.vmap(loss.fn)(out, y))

        return jax.value_and_grad(f)(v["params"])

    device = jax.devices()[0]
    cpu = jax.devices("cpu")[0]
    on_accel = jax.jit(loss_and_grad, device=device)(variables)
    on_cpu = jax.jit(loss_and_grad, device=cpu)(jax.device_put(variables, cpu))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4),
        jax.device_get(on_accel),
        jax.device_get(on_cpu),
    )
