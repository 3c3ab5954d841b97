"""Registry-wide tests: every registered model, from its card's tiny config.

A model registered with ``register_model`` is picked up here automatically: it must build,
give finite outputs of the right batch size, give every parameter a gradient, pass the
float64 gradcheck, agree between jit and eager, and train without recompiling.
"""

import functools

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


@functools.cache
def _built(name):
    """(card, model, variables, x, y) for the tiny config; cached across tests of one model."""
    card = jaxnets.model_card(name)
    model = jaxnets.create_model(name, **card.test_config)
    k_x, k_init, k_drop, k_y = jax.random.split(jax.random.PRNGKey(0), 4)
    x = registry.example_inputs(card, k_x, batch_size=8)
    variables = jax.jit(functools.partial(model.init, train=False))(
        {"params": k_init, "dropout": k_drop}, x
    )
    outputs = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    y = losses.random_targets(card.loss, k_y, outputs)
    return card, model, variables, x, y


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


@pytest.mark.parametrize("name", MODELS)  # the full config differs between presets
def test_builds_with_finite_outputs(name):
    card, model, variables, x, _ = _built(name)
    outputs = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    assert outputs.shape[0] == x.shape[0]
    assert bool(jnp.all(jnp.isfinite(outputs)))
    # the default (non-tiny) config builds too, checked by shape only
    full = jaxnets.create_model(name)
    shape = jax.ShapeDtypeStruct((2, *card.input_shape), np.dtype(card.input_dtype))
    jax.eval_shape(
        lambda x: full.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x),
        shape,
    )


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
def test_jit_equals_eager(name):
    _, model, variables, x, _ = _built(name)
    key = {"dropout": jax.random.PRNGKey(3)}
    jitted = jax.jit(
        lambda v, x: model.apply(v, x, train=True, rngs=key, mutable=["batch_stats"])[0]
    )(variables, x)
    with jax.disable_jit():
        eager = model.apply(variables, x, train=True, rngs=key, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(jitted, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", DISTINCT)
def test_train_step_runs_twice_without_recompiling(name):
    card, model, _, x, y = _built(name)
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
    card, *_ = _built(name)
    wrong = np.zeros((2, *card.input_shape, 3), dtype=card.input_dtype)
    with pytest.raises(jaxnets.InputSpecError, match=f"model '{name}' expects input of shape"):
        registry.check_input(card, wrong)
    registry.check_input(card, np.zeros((2, *card.input_shape), dtype=card.input_dtype))


@pytest.mark.accelerator
@pytest.mark.parametrize("name", DISTINCT)
def test_accelerator_matches_cpu(name):
    """On a GPU/TPU: the tiny model's outputs and gradients equal the CPU's (float32)."""
    card, model, variables, x, y = _built(name)
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
