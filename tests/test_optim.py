"""Optimizers and schedules: convergence on a quadratic, and their first steps pinned to the update
equations written out in NumPy."""

import difflib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule


def _run(opt, steps=200):
    """Minimise the ill-conditioned quadratic ½(x² + 10 y²) from (1, 1)."""
    params = jnp.array([1.0, 1.0])
    state = opt.init(params)
    for _ in range(steps):
        grads = params * jnp.array([1.0, 10.0])
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_minimises_a_quadratic(name):
    lr = 0.05 if name in ("sgd", "momentum", "nesterov") else 0.02
    assert float(jnp.linalg.norm(_run(make_optimizer(name, lr)))) < 0.05  # from 1.41


def test_sgd_step_is_minus_lr_times_gradient():
    opt = make_optimizer("sgd", 0.1)
    updates, _ = opt.update(jnp.array([2.0]), opt.init(jnp.array([0.0])))
    assert float(updates[0]) == pytest.approx(-0.2)


def test_schedules_values():
    assert float(make_schedule(1.0, "step", decay_every=10, decay_rate=0.5)(25)) == 0.25
    assert float(
        make_schedule(1.0, "exponential", decay_every=10, decay_rate=0.5)(5)
    ) == pytest.approx(0.5**0.5)
    cosine = make_schedule(1.0, "cosine", total_steps=100)
    assert float(cosine(0)) == 1.0 and float(cosine(50)) == pytest.approx(0.5)
    assert float(cosine(100)) == pytest.approx(0.0, abs=1e-7)


def test_clip_norm_bounds_the_update():
    opt = make_optimizer("sgd", 1.0, clip_norm=1.0)
    updates, _ = opt.update(jnp.array([30.0, 40.0]), opt.init(jnp.zeros(2)))
    np.testing.assert_allclose(updates, [-0.6, -0.8], rtol=1e-6)


def test_weight_decay_adds_to_gradient():
    opt = make_optimizer("sgd", 1.0, weight_decay=0.1)
    updates, _ = opt.update(jnp.array([0.0]), opt.init(jnp.array([2.0])), jnp.array([2.0]))
    assert float(updates[0]) == pytest.approx(-0.2)


def test_bad_names_and_values_are_explained():
    with pytest.raises(ValueError, match="did you mean 'adam'"):
        make_optimizer("adan", 0.1)
    with pytest.raises(ValueError, match="cosine"):
        make_optimizer("sgd", 0.1, schedule="cosine")
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        make_optimizer("sgd", -1.0)


# --- every optimizer's first steps against its update equations, in float64 ----------------
#
# The equations are Optax's documented conventions (optax 0.2 docstrings of sgd, rmsprop, adam,
# adamw, add_decayed_weights, clip_by_global_norm and the schedules), written out in NumPy:
#   sgd        u = -α_t g
#   momentum   m = g + β m;            u = -α_t m
#   nesterov   m = g + β m;            u = -α_t (g + β m)
#   rmsprop    ν = ρ ν + (1-ρ) g²;     u = -α_t g / sqrt(ν + ε)     ρ = 0.9, ε = 1e-8 inside
#   adam       m = β1 m + (1-β1) g;    v = β2 v + (1-β2) g²;        β1, β2 = 0.9, 0.999
#              u = -α_t m̂ / (sqrt(v̂) + ε),  m̂ = m / (1-β1^t), v̂ = v / (1-β2^t), ε = 1e-8
#   adamw      u = -α_t (m̂ / (sqrt(v̂) + ε) + λ θ)               (decay decoupled from g)
#   L2 decay   g <- g + λ θ before the rule (all but adamw)
#   clipping   g <- g · c / ‖g‖ when the global norm ‖g‖ over all leaves is >= c (first)
# with α_t the schedule at t = 0, 1, ... (the update's index).

H = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])  # SPD
C = np.array([1.0, -2.0, 0.5])
D = np.array([[1.0, 4.0], [0.5, 2.0]])
E = np.array([[0.3, -1.0], [2.0, 0.0]])
THETA0 = {"matrix": np.array([[1.0, -1.0], [0.5, 2.0]]), "vector": np.array([0.5, -1.5, 2.0])}


def _quadratic_grad(theta):
    """Gradient of ½ vᵀHv - c·v + ½ Σ D ⊙ (M - E)² on a (3,) and a (2, 2) leaf: the curvatures
    differ by leaf and by entry, so the adaptive rules scale entries differently."""
    return {"matrix": D * (theta["matrix"] - E), "vector": H @ theta["vector"] - C}


def _reference_steps(name, lr_at, steps, momentum=0.9, weight_decay=0.0, clip_norm=None):
    """The parameters after each of ``steps`` updates, from the equations above."""
    theta = {k: v.copy() for k, v in THETA0.items()}
    first = {k: np.zeros_like(v) for k, v in theta.items()}  # m (trace or Adam's mean)
    second = {k: np.zeros_like(v) for k, v in theta.items()}  # ν or v
    out = []
    for t in range(steps):
        g = _quadratic_grad(theta)
        if clip_norm is not None:
            norm = np.sqrt(sum(np.sum(x**2) for x in g.values()))
            if norm >= clip_norm:
                g = {k: x * clip_norm / norm for k, x in g.items()}
        if weight_decay and name != "adamw":
            g = {k: g[k] + weight_decay * theta[k] for k in g}
        lr = lr_at(t)
        for k in theta:
            if name == "sgd":
                u = -lr * g[k]
            elif name in ("momentum", "nesterov"):
                first[k] = g[k] + momentum * first[k]
                u = -lr * (g[k] + momentum * first[k] if name == "nesterov" else first[k])
            elif name == "rmsprop":
                second[k] = 0.9 * second[k] + 0.1 * g[k] ** 2
                u = -lr * g[k] / np.sqrt(second[k] + 1e-8)
            else:  # adam, adamw
                first[k] = 0.9 * first[k] + 0.1 * g[k]
                second[k] = 0.999 * second[k] + 0.001 * g[k] ** 2
                m_hat, v_hat = first[k] / (1 - 0.9 ** (t + 1)), second[k] / (1 - 0.999 ** (t + 1))
                u = -lr * m_hat / (np.sqrt(v_hat) + 1e-8)
                if name == "adamw":
                    u = u - lr * weight_decay * theta[k]
            theta[k] = theta[k] + u
        out.append({k: v.copy() for k, v in theta.items()})
    return out


def _optax_steps(opt, steps):
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v) for k, v in THETA0.items()}
        state = opt.init(params)
        update = jax.jit(opt.update)
        out = []
        for _ in range(steps):
            grads = jax.tree.map(jnp.asarray, _quadratic_grad(jax.tree.map(np.asarray, params)))
            updates, state = update(grads, state, params)
            params = optax.apply_updates(params, updates)
            assert all(p.dtype == jnp.float64 for p in jax.tree.leaves(params))
            out.append(jax.tree.map(np.asarray, params))
        return out


LR = 0.1
CONSTANT = lambda t: LR  # noqa: E731
STEP_EVERY_2 = lambda t: LR * 0.5 ** (t // 2)  # noqa: E731
SMOOTH_EVERY_2 = lambda t: LR * 0.5 ** (t / 2)  # noqa: E731
COSINE_OVER_4 = lambda t: LR * 0.5 * (1 + np.cos(np.pi * min(t, 4) / 4))  # noqa: E731

PINNED = {
    # id: (name, make_optimizer keyword arguments, reference keyword arguments)
    "sgd": ("sgd", {}, {}),
    "momentum": ("momentum", {}, {}),
    "momentum 0.5": ("momentum", {"momentum": 0.5}, {"momentum": 0.5}),
    "nesterov": ("nesterov", {}, {}),
    "nesterov 0.5": ("nesterov", {"momentum": 0.5}, {"momentum": 0.5}),
    "rmsprop": ("rmsprop", {}, {}),
    "adam": ("adam", {}, {}),
    "adamw": ("adamw", {"weight_decay": 0.3}, {"weight_decay": 0.3}),
    "sgd + L2": ("sgd", {"weight_decay": 0.3}, {"weight_decay": 0.3}),
    "nesterov + L2": ("nesterov", {"weight_decay": 0.3}, {"weight_decay": 0.3}),
    "adam + L2": ("adam", {"weight_decay": 0.3}, {"weight_decay": 0.3}),
    # ‖g‖ is 4.34 at θ0 and 3.58 after one step: clipped on the first step only
    "sgd clipped": ("sgd", {"clip_norm": 4.0}, {"clip_norm": 4.0}),
    "momentum clipped + L2": (
        "momentum",
        {"clip_norm": 2.0, "weight_decay": 0.3},
        {"clip_norm": 2.0, "weight_decay": 0.3},
    ),
    "momentum, step schedule": (
        "momentum",
        {"schedule": "step", "decay_every": 2, "decay_rate": 0.5},
        {"lr_at": STEP_EVERY_2},
    ),
    # total_steps 6 and no decay_every: a third of total_steps, 2
    "sgd, step schedule from total_steps": (
        "sgd",
        {"schedule": "step", "total_steps": 6, "decay_rate": 0.5},
        {"lr_at": STEP_EVERY_2},
    ),
    "adam, exponential schedule": (
        "adam",
        {"schedule": "exponential", "decay_every": 2, "decay_rate": 0.5},
        {"lr_at": SMOOTH_EVERY_2},
    ),
    "nesterov, cosine schedule": (
        "nesterov",
        {"schedule": "cosine", "total_steps": 4},
        {"lr_at": COSINE_OVER_4},
    ),
}


STEPS = 5


def _reference_for(case):
    name, _, reference_options = PINNED[case]
    return _reference_steps(name, **{"lr_at": CONSTANT, **reference_options}, steps=STEPS)


@pytest.mark.parametrize("case", list(PINNED))
def test_first_steps_equal_the_update_equations(case):
    name, options, _ = PINNED[case]
    actual = _optax_steps(make_optimizer(name, LR, **options), STEPS)
    for t, (got, want) in enumerate(zip(actual, _reference_for(case), strict=True)):
        for leaf in want:
            np.testing.assert_allclose(
                got[leaf], want[leaf], rtol=1e-12, atol=1e-14, err_msg=f"{case}, step {t + 1}"
            )


def test_the_pinned_cases_tell_the_rules_apart():
    """The problem is not degenerate: after 5 steps every pair of cases (rules, momentum
    values, clipping, decay, schedules) is far apart, so matching one reference is no
    accident (nesterov vs momentum, clipped vs not, ...)."""
    finals = {
        case: np.concatenate([v.ravel() for v in _reference_for(case)[-1].values()])
        for case in PINNED
    }
    cases = list(finals)
    for i, a in enumerate(cases):
        for b in cases[i + 1 :]:
            assert np.abs(finals[a] - finals[b]).max() > 1e-3, (a, b)


def test_decay_rate_defaults_to_a_tenth_per_period():
    """Without decay_rate, the step schedule multiplies the rate by 0.1 every decay_every steps
    (lr · 0.1^floor(t / every)), in make_schedule and through make_optimizer."""
    schedule = make_schedule(2.0, "step", decay_every=3)
    np.testing.assert_allclose([float(schedule(t)) for t in (0, 2, 3, 7)], [2.0, 2.0, 0.2, 0.02])
    opt = make_optimizer("sgd", 1.0, schedule="exponential", decay_every=1)
    state = opt.init(jnp.zeros(1))
    _, state = opt.update(jnp.ones(1), state)
    updates, _ = opt.update(jnp.ones(1), state)  # the second update: lr · 0.1^1
    np.testing.assert_allclose(updates, [-0.1], rtol=1e-6)


def test_unknown_names_are_explained_with_at_most_two_close_matches():
    with pytest.raises(
        ValueError, match=r"unknown optimizer 'rmsadam' — did you mean 'adam', 'adamw'\? \("
    ):
        make_optimizer("rmsadam", 0.1)
    with pytest.raises(ValueError, match=r"unknown schedule 'cosin' — did you mean 'cosine'"):
        make_schedule(0.1, "cosin")


def test_a_zero_learning_rate_is_rejected():
    """learning_rate must be > 0: zero would silently train nothing."""
    for schedule in SCHEDULES:
        with pytest.raises(ValueError, match="learning_rate must be > 0; got 0.0"):
            make_schedule(0.0, schedule, total_steps=9)


def test_the_default_schedule_is_constant():
    """make_schedule(lr) without a schedule name keeps lr at every step."""
    schedule = make_schedule(0.3)
    np.testing.assert_allclose([float(schedule(t)) for t in (0, 7, 10**6)], [0.3] * 3, rtol=1e-7)


def test_the_decay_period_defaults_to_a_third_of_total_steps_rounded_down():
    """Without decay_every, the step and exponential schedules decay every total_steps // 3
    steps: total_steps=10 gives a period of 3 (not 10/3), so the rate halves at step 3.
    Without either, or with a period that rounds down to 0, they ask for one."""
    step = make_schedule(1.0, "step", total_steps=10, decay_rate=0.5)
    np.testing.assert_allclose([float(step(t)) for t in (2, 3, 5, 6)], [1.0, 0.5, 0.5, 0.25])
    smooth = make_schedule(1.0, "exponential", total_steps=10, decay_rate=0.5)
    np.testing.assert_allclose([float(smooth(t)) for t in (3, 6)], [0.5, 0.25], rtol=1e-6)
    for schedule in ("step", "exponential"):
        for total_steps in (None, 0, 2):
            with pytest.raises(ValueError, match=f"schedule='{schedule}' needs decay_every or"):
                make_schedule(1.0, schedule, total_steps=total_steps)


def test_a_clip_norm_of_zero_or_less_is_rejected():
    """clip_norm must be > 0: clipping to norm 0 would zero every update."""
    for clip_norm in (0, 0.0, -1.0):
        with pytest.raises(ValueError, match=f"clip_norm must be > 0; got {clip_norm}"):
            make_optimizer("sgd", 0.1, clip_norm=clip_norm)


def test_hints_name_loose_matches_and_are_left_out_when_nothing_is_close():
    """The hint takes names with a difflib ratio >= 0.4 (looser than difflib's 0.6 default),
    so abbreviations and near relatives get one; a name close to nothing gets the plain
    message, with no empty or placeholder hint."""
    ratio = lambda a, b: difflib.SequenceMatcher(None, a, b).ratio()  # noqa: E731
    assert 0.4 <= ratio("adagrad", "adamw") < ratio("adagrad", "adam") < 0.6
    assert 0.4 <= ratio("exp", "exponential") < ratio("exp", "step") < 0.6
    assert max(ratio("lbfgs", name) for name in OPTIMIZERS) < 0.4
    every_optimizer = "(choose one of sgd, momentum, nesterov, rmsprop, adam, adamw)"
    every_schedule = "(choose one of constant, step, exponential, cosine)"
    for make, message in [
        (
            lambda: make_optimizer("adagrad", 0.1),
            f"unknown optimizer 'adagrad' — did you mean 'adam', 'adamw'? {every_optimizer}",
        ),
        (
            lambda: make_schedule(0.1, "exp"),
            f"unknown schedule 'exp' — did you mean 'step', 'exponential'? {every_schedule}",
        ),
        (lambda: make_optimizer("lbfgs", 0.1), f"unknown optimizer 'lbfgs' {every_optimizer}"),
    ]:
        with pytest.raises(ValueError) as error:
            make()
        assert str(error.value) == message
