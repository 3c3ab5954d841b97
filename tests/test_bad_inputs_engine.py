"""Bad inputs at the doors of the engine (issue 17): every case raises a jaxnets error that
says what was wrong and what would be right, before any training step runs.

Families: labels against the loss (classes in [0, K), {0, 1} labels, shapes (n,), (n, 1)
and one-hot told apart, a loss that does not fit the model's outputs), non-finite inputs
and targets, input feature sizes against the initialised parameters, batch sizes, and the
numbers given to ``make_optimizer``/``make_schedule``. Next to the bad cases, the accepted
neighbours (float class labels, bool binary labels, padding in sequences, boundary
settings) pass, so a check that refuses too much fails here too.

Cost: the checks run on the host from ``jax.eval_shape``; the only compiled programs are
one ``init`` per module and one short ``fit``.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import InputSpecError, create_model
from jaxnets.losses import TargetError, get_loss
from jaxnets.optim import make_optimizer, make_schedule
from jaxnets.train import Trainer, evaluate, fit

N, FEATURES, CLASSES = 12, 4, 3
OPTIMIZER = make_optimizer("sgd", 0.1)


def _mlp_trainer(outputs: int, loss: str) -> Trainer:
    return Trainer(create_model("mlp", hidden=(4,), num_outputs=outputs), loss, OPTIMIZER)


@pytest.fixture(scope="module")
def trainers():
    """One tiny Trainer per loss kind (3 classes, 1 logit, 2 real outputs), the mismatched
    pairs, and a state of the class model initialised for FEATURES inputs."""
    classes = Trainer.for_model("mlp", OPTIMIZER, hidden=(4,), num_outputs=CLASSES)
    return {
        "class": classes,
        "binary": _mlp_trainer(1, "binary_cross_entropy"),
        "real": _mlp_trainer(2, "squared_error"),
        "softmax_on_one_logit": _mlp_trainer(1, "softmax_cross_entropy"),
        "binary_on_three_logits": _mlp_trainer(3, "binary_cross_entropy"),
        "state": classes.init(jax.random.PRNGKey(0), jnp.zeros((2, FEATURES))),
    }


def _x(n=N, features=FEATURES):
    return jax.random.normal(jax.random.PRNGKey(1), (n, features))


CLASS_Y = np.arange(N) % CLASSES

# (trainer, x, y, expected error, message): checked by Trainer.check_data for training.
BAD_DATA = {
    "class label -1": ("class", None, np.where(CLASS_Y == 0, -1, CLASS_Y), TargetError,
                       r"softmax_cross_entropy takes integer classes in \[0, 3\) \(the model has "
                       r"3 outputs\); got values in \[-1, 2\], e.g. y\[0\] = -1"),
    "class label K": ("class", None, np.where(CLASS_Y == 2, 3, CLASS_Y), TargetError,
                      r"integer classes in \[0, 3\).*got values in \[0, 3\], e.g. y\[2\] = 3"),
    "class label 2.7": ("class", None, CLASS_Y + np.eye(N)[5] * 0.7, TargetError,
                        r"integer classes in \[0, 3\); got non-integer labels such as "
                        r"y\[5\] = 2\.7"),
    "class labels (n, 1)": ("class", None, CLASS_Y[:, None], TargetError,
                            r"of shape \(12,\) for outputs of shape \(n, 3\); got y of shape "
                            r"\(12, 1\): pass y\.reshape\(12\)"),
    "class labels one-hot": ("class", None, np.eye(CLASSES)[CLASS_Y], TargetError,
                             r"got y of shape \(12, 3\): one-hot rows\? pass class indices, "
                             r"y\.argmax\(-1\)"),
    "class labels NaN": ("class", None, np.where(CLASS_Y == 1, np.nan, CLASS_Y), TargetError,
                         r"training data: y has 4 NaN/inf entries \(of 12\); the first is "
                         r"y\[1\] = nan"),
    "class labels strings": ("class", None, np.array(["a"] * N), TargetError,
                             r"y must hold numbers for softmax_cross_entropy; got dtype <U1"),
    "fewer targets than inputs": ("class", None, CLASS_Y[:-1], ValueError,
                                  r"training data: 12 inputs but 11 targets"),
    "binary labels {0, 5}": ("binary", None, (CLASS_Y == 1) * 5, TargetError,
                             r"binary_cross_entropy takes labels in \{0, 1\}; got values in "
                             r"\[0, 5\], e.g. y\[1\] = 5"),
    "binary labels {-1, 1}": ("binary", None, np.where(CLASS_Y == 1, 1, -1), TargetError,
                              r"for -1/\+1 labels pass \(y \+ 1\) / 2"),
    "binary labels 0.5": ("binary", None, np.full(N, 0.5), TargetError,
                          r"labels in \{0, 1\}; got non-integer labels such as y\[0\] = 0\.5"),
    "binary labels one-hot": ("binary", None, np.eye(2)[CLASS_Y % 2], TargetError,
                              r"of shape \(12,\) for outputs of shape \(n, 1\); got y of shape "
                              r"\(12, 2\): one-hot rows"),
    "softmax on one logit": ("softmax_on_one_logit", None, CLASS_Y % 2, TargetError,
                             r"needs logits \(num_classes,\) with at least 2 classes per "
                             r"example; the model gives outputs of shape \(1,\): use "
                             r"binary_cross_entropy"),
    "binary loss on three logits": ("binary_on_three_logits", None, CLASS_Y % 2, TargetError,
                                    r"needs one logit per example \(outputs \(1,\) or \(\)\); "
                                    r"the model gives outputs of shape \(3,\): use "
                                    r"softmax_cross_entropy"),
    "real targets (n,) for 2 outputs": ("real", None, np.zeros(N), TargetError,
                                        r"squared_error takes real values of shape \(12, 2\) "
                                        r"for outputs of shape \(n, 2\); got y of shape \(12,\)"),
    "real targets inf": ("real", None, np.where(np.arange(2 * N).reshape(N, 2) == 7, np.inf, 0),
                         TargetError, r"y has 1 NaN/inf entry \(of 24\); the first is "
                         r"y\[3, 1\] = inf"),
    "inputs NaN": ("class", _x().at[3, 2].set(jnp.nan), CLASS_Y, ValueError,
                   r"training data: x has 1 NaN/inf entry \(of 48\); the first is "
                   r"x\[3, 2\] = nan: remove or impute"),
    "inputs inf": ("class", _x().at[7].set(-jnp.inf), CLASS_Y, ValueError,
                   r"x has 4 NaN/inf entries \(of 48\); the first is x\[7, 0\] = -inf"),
    "inputs of another rank": ("class", jnp.zeros((N, 2, 2)), CLASS_Y, InputSpecError,
                               r"model 'mlp' expects input of shape \(batch, 64\)"),
    "int inputs for a float model": ("class", jnp.zeros((N, 4), jnp.int32), CLASS_Y,
                                     InputSpecError, r"dtype float32; got shape \(12, 4\) and "
                                     r"dtype int32"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_refused_before_any_step(trainers, case):
    kind, x, y, error, match = BAD_DATA[case]
    x = _x() if x is None else x
    with pytest.raises(error, match=match):
        trainers[kind].check_data(x, y, batch_size=4, train=True)


BAD_BATCH_SIZES = {
    "zero": (0, ValueError, r"batch_size must be a positive integer; got 0"),
    "negative": (-3, ValueError, r"batch_size must be a positive integer; got -3"),
    "bool": (True, TypeError, r"batch_size must be a positive integer; got True \(bool\)"),
    "float": (2.5, TypeError, r"got 2\.5 \(float\)"),
    "whole float": (4.0, TypeError, r"got 4\.0 \(float\)"),
    "string": ("4", TypeError, r"got '4' \(str\)"),
    "more than the examples": (13, ValueError, r"training data: batch_size 13 is larger than "
                               r"the 12 examples: an epoch would take no step; use a batch_size "
                               r"in \[1, 12\]"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_BATCH_SIZES))
def test_bad_batch_sizes_are_refused(trainers, case):
    batch_size, error, match = BAD_BATCH_SIZES[case]
    with pytest.raises(error, match=match):
        trainers["class"].check_data(_x(), CLASS_Y, batch_size=batch_size, train=True)


@pytest.mark.parametrize(
    ("batch_size", "error"),
    [(0, ValueError), (-1, ValueError), (False, TypeError), (1.5, TypeError)],
)
def test_bad_evaluation_batch_sizes_are_refused_by_evaluate(trainers, batch_size, error):
    """Evaluation may use chunks larger than the data, but not empty or fractional ones."""
    with pytest.raises(error, match=r"batch_size must be a positive integer"):
        trainers["class"].evaluate(trainers["state"], _x(), CLASS_Y, batch_size=batch_size)


class _Flatten(nn.Module):
    """A Dense layer on flattened examples: the kernel's rows count the input's elements."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_inputs_are_checked_against_the_shape_the_state_was_initialised_for(trainers):
    trainer, state = trainers["class"], trainers["state"]
    with pytest.raises(InputSpecError, match=r"training data: the model was initialised for 4 "
                       r"features, got 7: its parameter hidden_0/kernel has shape \(4, 4\), but "
                       r"inputs of example shape \(7,\) need \(7, 4\)"):  # fmt: skip
        trainer.check_data(_x(features=7), CLASS_Y, state=state, batch_size=4, train=True)
    # a reshaped input whose last axis is not the one that changed is named by its shape
    flat = Trainer(_Flatten(), "softmax_cross_entropy", OPTIMIZER)
    flat_state = flat.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2)))
    with pytest.raises(InputSpecError, match=r"initialised for inputs of another shape: its "
                       r"parameter Dense_0/kernel has shape \(4, 3\), but inputs of example "
                       r"shape \(3, 3\) need \(9, 3\)"):  # fmt: skip
        flat.check_data(jnp.zeros((N, 3, 3)), CLASS_Y, state=flat_state)
    # a state of another model (one layer, not two) is refused as such
    with pytest.raises(InputSpecError, match=r"the state has 2 parameter arrays but this model "
                       r"has 4: the state was initialised for another model"):  # fmt: skip
        trainer.check_data(_x(), CLASS_Y, state=flat_state)


def test_fit_and_evaluate_refuse_bad_data_before_the_first_step(trainers):
    """Through the public loop: the refused state is neither stepped nor donated."""
    trainer, state = trainers["class"], trainers["state"]
    with pytest.raises(TargetError, match=r"training data: .*got values in \[-1, 1\]"):
        fit(trainer, state, (_x(), CLASS_Y - 1), epochs=1, batch_size=4, progress=False)
    with pytest.raises(TypeError, match=r"batch_size must be a positive integer; got 2\.5"):
        fit(trainer, state, (_x(), CLASS_Y), epochs=1, batch_size=2.5, progress=False)
    with pytest.raises(TargetError, match=r"evaluation data: .*non-integer labels"):
        evaluate(trainer, state, (_x(), CLASS_Y * 0.5))
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(state))
    assert int(state.step) == 0


def test_good_data_passes_and_a_checked_pair_does_not_hide_a_new_bad_one(trainers):
    """Accepted neighbours of the bad cases: class labels stored as whole floats, binary
    labels as bools, floats or (n, 1), one real output against (n,) targets. Then a new bad
    array is caught after good ones were checked (the once-per-array memo keys on objects)."""
    trainer, state = trainers["class"], trainers["state"]
    x, y = _x(), jnp.asarray(CLASS_Y)
    trainer.check_data(x, y, state=state, batch_size=N, train=True)
    trainer.check_data(x, CLASS_Y.astype(np.float32), state=state, batch_size=N, train=True)
    for labels in (CLASS_Y == 1, (CLASS_Y == 1).astype(np.float32), (CLASS_Y == 1)[:, None]):
        trainers["binary"].check_data(x, labels, batch_size=1, train=True)
    _mlp_trainer(1, "squared_error").check_data(x, np.linspace(-1, 1, N), batch_size=4)
    trainer.check_data(x, y, state=state)  # the same objects again: remembered
    with pytest.raises(ValueError, match=r"x has 1 NaN/inf entry"):
        trainer.check_data(x.at[0, 0].set(jnp.nan), y, state=state)
    with pytest.raises(TargetError, match=r"got values in \[0, 9\]"):
        trainer.check_data(x, y.at[4].set(9), state=state)
    copy = jax.tree.map(jnp.copy, state)  # fit donates its state; the fixture's is shared
    result = fit(trainer, copy, (x, y), epochs=1, batch_size=4, progress=False)
    assert int(result.state.step) == N // 4


TARGET_CASES = {  # (loss, outputs of one example, y, error message or None when accepted)
    "sequence padding -1": ("sequence_cross_entropy", (2, 5), [[0, -1], [4, -1]], None),
    "sequence label K": ("sequence_cross_entropy", (2, 5), [[0, -1], [1, 5]],
                         r"integer classes in \[0, 5\) \(the model has 5 outputs; negative "
                         r"labels mark padding\); got values in \[-1, 5\], e.g. y\[1, 1\] = 5"),
    "sequence labels one per sequence": ("sequence_cross_entropy", (2, 5), [1, 2],
                                         r"of shape \(2, 2\) for outputs of shape \(n, 2, 5\); "
                                         r"got y of shape \(2,\)"),
    "binary image {0, 1}": ("bernoulli_nll", (2, 2, 1), np.ones((3, 2, 2, 1)), None),
    "binary image 0.5": ("bernoulli_nll", (2, 2, 1), np.full((3, 2, 2, 1), 0.5),
                         r"labels in \{0, 1\}; got non-integer labels such as y\[0, 0, 0, 0\]"),
    "binary image without channels": ("bernoulli_nll", (2, 2, 1), np.ones((3, 2, 2)),
                                      r"of shape \(3, 2, 2, 1\) .*got y of shape \(3, 2, 2\)"),
    "hinge labels 2": ("binary_hinge", (1,), [0, 1, 2], r"binary_hinge takes labels in \{0, 1\}"),
    "multiclass hinge label 3.5": ("multiclass_hinge", (4,), [0, 3.5],
                                   r"non-integer labels such as y\[1\] = 3\.5"),
    "scalar target": ("squared_error", (1,), 1.0, r"y needs a batch axis"),
    "density targets ignored": ("negative_log_likelihood", (), np.full(3, np.nan), None),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TARGET_CASES))
def test_each_loss_kind_checks_its_targets(case):
    loss, output_shape, y, match = TARGET_CASES[case]
    if match is None:
        get_loss(loss).check_targets(np.asarray(y), output_shape)
    else:
        with pytest.raises(TargetError, match=match):
            get_loss(loss).check_targets(np.asarray(y), output_shape)


SCHEDULE_SETTINGS = {"learning_rate", "schedule", "total_steps", "decay_rate", "decay_every"}
BAD_OPTIMIZER_SETTINGS = {  # keyword arguments of make_optimizer("momentum", ...)
    "learning rate NaN": ({"learning_rate": float("nan")}, ValueError,
                          r"learning_rate must be a finite number > 0; got nan"),
    "learning rate inf": ({"learning_rate": float("inf")}, ValueError,
                          r"learning_rate must be a finite number > 0; got inf"),
    "learning rate negative": ({"learning_rate": -0.1}, ValueError,
                               r"learning_rate must be > 0; got -0\.1"),
    "learning rate string": ({"learning_rate": "0.1"}, TypeError,
                             r"learning_rate must be a real number; got '0\.1' \(str\)"),
    "learning rate bool": ({"learning_rate": True}, TypeError, r"got True \(bool\)"),
    "momentum NaN": ({"momentum": float("nan")}, ValueError,
                     r"momentum must be a finite number in \[0, 1\); got nan"),
    "momentum 1": ({"momentum": 1.0}, ValueError, r"momentum must be in \[0, 1\); got 1\.0"),
    "momentum negative": ({"momentum": -0.1}, ValueError, r"momentum must be in \[0, 1\)"),
    "weight decay inf": ({"weight_decay": float("inf")}, ValueError,
                         r"weight_decay must be a finite number >= 0; got inf"),
    "weight decay negative": ({"weight_decay": -1e-4}, ValueError,
                              r"weight_decay must be >= 0; got -0\.0001"),
    "clip norm NaN": ({"clip_norm": float("nan")}, ValueError,
                      r"clip_norm must be a finite number > 0; got nan"),
    "clip norm inf": ({"clip_norm": float("inf")}, ValueError, r"clip_norm must be a finite"),
    "decay rate NaN": ({"schedule": "step", "total_steps": 9, "decay_rate": float("nan")},
                       ValueError, r"decay_rate must be a finite number in \(0, 1\]; got nan"),
    "decay rate 0": ({"schedule": "step", "total_steps": 9, "decay_rate": 0.0}, ValueError,
                     r"decay_rate must be in \(0, 1\]; got 0\.0"),
    "decay rate above 1": ({"schedule": "exponential", "total_steps": 9, "decay_rate": 2.0},
                           ValueError, r"decay_rate must be in \(0, 1\]; got 2\.0"),
    "total steps negative": ({"schedule": "cosine", "total_steps": -5}, ValueError,
                             r"total_steps must be an integer >= 0; got -5"),
    "total steps float": ({"schedule": "cosine", "total_steps": 10.5}, TypeError,
                          r"total_steps must be an integer >= 0; got 10\.5 \(float\)"),
    "total steps NaN": ({"schedule": "cosine", "total_steps": float("nan")}, TypeError,
                        r"total_steps must be an integer >= 0; got nan"),
    "decay every 0": ({"schedule": "step", "decay_every": 0}, ValueError,
                      r"decay_every must be a positive integer; got 0"),
    "decay every inf": ({"schedule": "step", "decay_every": float("inf")}, TypeError,
                        r"decay_every must be a positive integer; got inf \(float\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_OPTIMIZER_SETTINGS))
def test_bad_optimizer_settings_are_refused_when_the_optimizer_is_made(case):
    """The schedule's own settings are refused by make_schedule too."""
    settings, error, match = BAD_OPTIMIZER_SETTINGS[case]
    with pytest.raises(error, match=match):
        make_optimizer("momentum", **{"learning_rate": 0.1, **settings})
    if set(settings) <= SCHEDULE_SETTINGS:
        with pytest.raises(error, match=match):
            make_schedule(**{"learning_rate": 0.1, **settings})


def test_boundary_optimizer_settings_are_accepted():
    """The edges of each range, and numpy scalars, are valid settings."""
    for settings in (
        {"momentum": 0.0, "weight_decay": 0.0},
        {"schedule": "step", "decay_rate": 1.0, "decay_every": 1},
        {"schedule": "cosine", "total_steps": np.int64(10), "clip_norm": np.float32(0.5)},
    ):
        make_optimizer("momentum", np.float32(0.1), **settings)
    assert float(make_schedule(0.1, "cosine", total_steps=np.int64(10))(10)) == 0.0
