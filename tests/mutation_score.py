"""The mutation score of `make mutate` (issue 15): killed / non-equivalent mutants, per module.

Reads mutmut's results (mutants/<module>.py.meta, written by `mutmut run`), takes out the
surviving mutants argued equivalent below, prints a per-module table and the survivors' diffs,
and exits 1 when the score is under ``--min`` (0.9). Timeouts, "no tests" (no targeted test
reaches the function), suspicious results and mutants not checked yet all count as not killed.

An equivalence entry names the mutant and the line the mutant writes: mutmut numbers mutants
per function, so after an edit a number can name another mutation; an entry whose line no longer
matches is reported as stale and its mutant counts as a survivor again.

Run from the repository root: ``python tests/mutation_score.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import tomllib

# mutant name -> (a line the mutant writes, without the "+", why it cannot change behaviour)
_PROMOTES_EXACTLY = (
    "the other operand is float64, and NumPy promotes this one to float64 exactly (float32 and "
    "integers are exact in float64) before the product: the same sums"
)
EQUIVALENT: dict[str, tuple[str, str]] = {
    "jaxnets.data.augment.x_random_shift__mutmut_14": (
        "offsets_Bx2 = jax.random.randint(rng, (x.shape[0], 3), -max_shift, max_shift + 1)",
        "equivalent in distribution only: a third, unused offset column is drawn, the two used "
        "ones stay independent and uniform on [-max_shift, max_shift] per image; which shift "
        "a given key draws changes",
    ),
    "jaxnets.data.augment.x_compose__mutmut_9": (
        "for augmentation, key in zip(augmentations, keys, strict=None):",
        "keys is split into exactly len(augmentations) keys: zip's strict check never fires",
    ),
    "jaxnets.data.augment.x_shift_images__mutmut_28": (
        "offsets_Bx2 = jnp.clip(offsets_Bx2, -pad, )",
        "an offset above pad puts the slice start below 0, which lax.dynamic_slice clamps to "
        "0: the same blank image as the clipped offset",
    ),
    "jaxnets.gradcheck.x__map_in_chunks__mutmut_12": (
        "padded = jnp.concatenate([xs, jnp.repeat(xs[:1], pad, axis=0)]) if (pad) or True else xs",
        "with pad = 0 the concatenation appends nothing: the same array",
    ),
    "jaxnets.gradcheck.x_gradcheck__mutmut_107": (
        "for lo, hi in zip(offsets[:-1], offsets[1:], strict=True)",
        "offsets[:-1] and offsets[1:] always have the same length: strict never fires",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_14": (
        "keys = jax.random.split(jax.random.PRNGKey(seed), )",
        "equivalent by contract only: two keys, and JAX clamps keys[2], keys[3] to keys[1]; "
        "the batch, dropout and targets are still fixed by the seed, only their draws change",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_28": (
        "x = registry.example_inputs(card, keys[0], batch_size, )",
        "equivalent by contract: a float32 batch is another fixed random batch, promoted "
        "exactly to float64 against the float64 parameters; only its draw changes",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_56": (
        "lambda v: v.astype(None) if jnp.issubdtype(v.dtype, jnp.floating) else v,",
        "inside enable_x64(True), astype(None) casts to the default float, float64",
    ),
    "jaxnets.gradcheck.x_gradcheck__mutmut_8": (
        "seed: int = 1,",
        "equivalent by contract: any fixed default seed gives reproducible random unit "
        "directions; only which directions the default draws changes",
    ),
    "jaxnets.data.augment.x_compose__mutmut_12": (
        "for augmentation, key in zip(augmentations, keys, ):",
        "keys is split into exactly len(augmentations) keys: zip's strict check never fires",
    ),
    "jaxnets.gradcheck.x_gradcheck__mutmut_176": (
        "for path, size, (a, n, grad) in zip(paths, sizes, pairs, strict=True)",
        "paths, sizes and pairs have one entry per leaf: strict never fires",
    ),
    "jaxnets.gradcheck.x_gradcheck__mutmut_171": (
        "for path, size, (a, n, grad) in zip(paths, sizes, pairs, strict=None)",
        "zip reads strict as a truth value: None and False are both false",
    ),
    "jaxnets.losses.x_multiclass_hinge__mutmut_13": (
        "z_t = jnp.take_along_axis(z, t[..., None], )",
        "jnp.take_along_axis's axis defaults to -1",
    ),
    "jaxnets.losses.x_random_targets__mutmut_17": (
        "return jax.random.randint(rng, (batch,), 0, outputs.shape[+1])",
        "a 'class' loss's outputs are (batch, num_classes): axis 1 is the last axis",
    ),
    "jaxnets.losses.x_sequence_accuracy__mutmut_10": (
        "right = (jnp.argmax(z, axis=+1) == t) & valid",
        "z is one sequence's (time, num_classes) logits (it sums over all axes, so it never "
        "broadcasts): axis 1 is the last axis",
    ),
    "jaxnets.losses.x_sequence_cross_entropy__mutmut_15": (
        "per_step = softmax_cross_entropy(z, jnp.where(valid, t, 1))",
        "the class put at padded steps only keeps the index in range; their losses are "
        "replaced by 0 by the where that follows (forward and gradient)",
    ),
    "jaxnets.losses.x_zero_one__mutmut_14": (
        "prediction = (_logit(z) > 0).astype(None)",
        "the prediction 0/1 as a float instead of an int32: != against the label compares "
        "the same values",
    ),
    "jaxnets.losses.x_zero_one__mutmut_21": (
        "return (prediction != jnp.asarray(t, None)).astype(jnp.float32)",
        "!= compares values: a class label stored as 2 or 2.0 gives the same answer",
    ),
    "jaxnets.losses.x_zero_one__mutmut_23": (
        "return (prediction != jnp.asarray(t, )).astype(jnp.float32)",
        "!= compares values: a class label stored as 2 or 2.0 gives the same answer (the int32 "
        "cast would only truncate a non-integer label, which is no class)",
    ),
    "jaxnets.nn.conv.x_convolve__mutmut_12": (
        "flipped = jnp.flip(w, )",
        "jnp.flip without an axis flips every axis, as axis=tuple(range(w.ndim)) does",
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_3": (
        "x = np.asarray(x, None)",
        _PROMOTES_EXACTLY,
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_10": ("w = np.asarray(w, )", _PROMOTES_EXACTLY),
    "jaxnets.nn.conv.x_filter_reference__mutmut_12": (
        "kernel = np.asarray(kernel, None)",
        _PROMOTES_EXACTLY,
    ),
    "jaxnets.nn.conv.x_filter_reference__mutmut_89": (
        "at = tuple(ti + taui for ti, taui in zip(t, tau, ))",
        "t and tau both have one entry per window axis: zip's strict check can never fire",
    ),
    "jaxnets.nn.conv.x_pool__mutmut_50": (
        "return nn.avg_pool(x, window, stride, padding.lower(), count_include_pad=False)",
        "lax.padtype_to_pads upper-cases the padding string: 'same' and 'SAME' are one padding",
    ),
    "jaxnets.nn.recurrent.xǁGRUCellǁupdate__mutmut_14": (
        "x_r, x_z, x_n = jnp.split(projected_t, 3, axis=+1)",
        "the scan steps on (batch, 3H) arrays: axis 1 is the last axis",
    ),
    "jaxnets.nn.recurrent.xǁGRUCellǁupdate__mutmut_24": (
        "h_r, h_z, h_n = jnp.split(recurrent, 3, axis=+1)",
        "the scan steps on (batch, 3H) arrays: axis 1 is the last axis",
    ),
    "jaxnets.nn.recurrent.x_make_recurrent__mutmut_23": (
        "Bidirectional(direction(None), direction(True)) if bidirectional else direction(False)",
        "Recurrent reads reverse for its truth value only: None and False are both false",
    ),
    "jaxnets.nn.recurrent.x_gradient_flow__mutmut_12": (
        "return recurrent.cell.hidden_state(carry)[1]",
        "the carry is a batch of one (x[None]) and JAX clamps an out-of-range index to the "
        "last row, which is row 0",
    ),
    "jaxnets.train.evaluation.xǁEvaluationǁ_chunk_sums__mutmut_21": (
        "self.model, state.params, state.model_state, xb, state.rng, train=None",
        "train is only read for its truth value (`if train and ...`, `not train` in the "
        "models' dropout and batch norm): None and False are both false",
    ),
    "jaxnets.train.step.xǁTrainerǁinit__mutmut_16": (
        '{"params": params_rng, "XXdropoutXX": dropout_rng}, jnp.asarray(sample_x)',
        "init runs the model with train=False, where dropout draws nothing: the dropout key "
        "is never read",
    ),
    "jaxnets.train.per_example.xǁPerExampleGradsǁper_example_grad_norms__mutmut_1": (
        "self, state: TrainState, x: jax.Array, y: jax.Array, *, batch_size: int = 257",
        "the chunk size only bounds memory: each example's norm is computed from its own "
        "gradient, whatever chunk it falls in",
    ),
    "jaxnets.nn.conv.x__pads__mutmut_8": (
        "return padding.lower()",
        "lax.padtype_to_pads upper-cases the padding string: 'same' and 'SAME' are one padding",
    ),
    "jaxnets.nn.conv.x_convolve__mutmut_10": (
        "flipped = jnp.flip(w, axis=None)",
        "jnp.flip with axis=None flips every axis, as axis=tuple(range(w.ndim)) does",
    ),
    "jaxnets.nn.conv.x_convolve__mutmut_2": (
        'def convolve(x: jax.Array, w: jax.Array, mode: str = "FULL") -> jax.Array:',
        "filtering's _check_padding lower-cases the mode: 'FULL' is 'full'",
    ),
    "jaxnets.nn.conv.x_convolve__mutmut_22": (
        "return out[1, ..., 0]",
        "the batch axis has size 1 (x[None]) and JAX clamps an out-of-range static index to "
        "the last entry, 0",
    ),
    "jaxnets.nn.conv.x_convolve__mutmut_23": (
        "return out[0, ..., 1]",
        "the channel axis has size 1 (one output map) and JAX clamps an out-of-range static "
        "index to the last entry, 0",
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_5": (
        "x = np.asarray(x, )",
        _PROMOTES_EXACTLY,
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_8": (
        "w = np.asarray(w, None)",
        _PROMOTES_EXACTLY,
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_18": (
        "out = np.zeros([n + k - 1 for n, k in zip(x.shape, w.shape, strict=None)])",
        "with ranks that differ the strict zips below still raise ValueError (only its text "
        "changes); with equal ranks strict never fires",
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_21": (
        "out = np.zeros([n + k - 1 for n, k in zip(x.shape, w.shape, )])",
        "with ranks that differ the strict zips below still raise ValueError (only its text "
        "changes); with equal ranks strict never fires",
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_22": (
        "out = np.zeros([n + k - 1 for n, k in zip(x.shape, w.shape, strict=False)])",
        "with ranks that differ the strict zips below still raise ValueError (only its text "
        "changes); with equal ranks strict never fires",
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_36": (
        "at = tuple(si - gi for si, gi in zip(s, sigma, strict=None))",
        "the strict zip of x.shape and w.shape above makes s and sigma the same length",
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_39": (
        "at = tuple(si - gi for si, gi in zip(s, sigma, ))",
        "the strict zip of x.shape and w.shape above makes s and sigma the same length",
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_40": (
        "at = tuple(si - gi for si, gi in zip(s, sigma, strict=False))",
        "the strict zip of x.shape and w.shape above makes s and sigma the same length",
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_47": (
        "if all(0 <= a < n for a, n in zip(at, x.shape, strict=None)):",
        "at has one entry per axis of out, which the strict zip above gives x's rank",
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_50": (
        "if all(0 <= a < n for a, n in zip(at, x.shape, )):",
        "at has one entry per axis of out, which the strict zip above gives x's rank",
    ),
    "jaxnets.nn.conv.x_convolve_reference__mutmut_51": (
        "if all(0 <= a < n for a, n in zip(at, x.shape, strict=False)):",
        "at has one entry per axis of out, which the strict zip above gives x's rank",
    ),
    "jaxnets.nn.conv.x_filter_reference__mutmut_2": (
        'def filter_reference(x: np.ndarray, kernel: np.ndarray, padding: str = "VALID") '
        "-> np.ndarray:",
        "_check_padding lower-cases the padding: 'VALID' is 'valid'",
    ),
    "jaxnets.nn.conv.x_filter_reference__mutmut_7": (
        "x = np.asarray(x, None)",
        _PROMOTES_EXACTLY,
    ),
    "jaxnets.nn.conv.x_filter_reference__mutmut_9": (
        "x = np.asarray(x, )",
        _PROMOTES_EXACTLY,
    ),
    "jaxnets.nn.conv.x_filter_reference__mutmut_14": (
        "kernel = np.asarray(kernel, )",
        _PROMOTES_EXACTLY,
    ),
    "jaxnets.nn.conv.x_filter_reference__mutmut_60": (
        "out_spatial = [n - k + 1 for n, k in zip(x.shape[1:-1], window, strict=None)]",
        "np.pad above takes one pad pair per axis of x (else it raises), so x has exactly "
        "len(window) spatial axes: strict never fires",
    ),
    "jaxnets.nn.conv.x_filter_reference__mutmut_63": (
        "out_spatial = [n - k + 1 for n, k in zip(x.shape[1:-1], window, )]",
        "np.pad above takes one pad pair per axis of x (else it raises), so x has exactly "
        "len(window) spatial axes: strict never fires",
    ),
    "jaxnets.nn.conv.x_filter_reference__mutmut_67": (
        "out_spatial = [n - k + 1 for n, k in zip(x.shape[1:-1], window, strict=False)]",
        "np.pad above takes one pad pair per axis of x (else it raises), so x has exactly "
        "len(window) spatial axes: strict never fires",
    ),
    "jaxnets.nn.conv.x_filter_reference__mutmut_86": (
        "at = tuple(ti + taui for ti, taui in zip(t, tau, strict=None))",
        "t and tau both have one entry per window axis: zip's strict check can never fire",
    ),
    "jaxnets.nn.conv.x_filter_reference__mutmut_90": (
        "at = tuple(ti + taui for ti, taui in zip(t, tau, strict=False))",
        "t and tau both have one entry per window axis: zip's strict check can never fire",
    ),
    "jaxnets.nn.conv.x_filtering__mutmut_3": (
        "x: jax.Array, kernel: jax.Array, *, stride: int | Sequence[int] = 1, "
        'padding: str = "VALID"',
        "_check_padding lower-cases the padding: 'VALID' is 'valid'",
    ),
    "jaxnets.nn.conv.x_output_size__mutmut_3": (
        'def output_size(size: int, window: int, stride: int = 1, padding: str = "VALID") -> int:',
        "_check_padding lower-cases the padding: 'VALID' is 'valid'",
    ),
    "jaxnets.models.linear.x_perceptron_mistake_bound__mutmut_7": (
        "X_aug = np.concatenate([np.asarray(X, None), np.ones((len(X), 1))], axis=1)",
        "np.concatenate with the float64 column of ones makes X_aug float64: float32 and "
        "integer inputs convert exactly either way",
    ),
    "jaxnets.models.linear.x_perceptron_mistake_bound__mutmut_9": (
        "X_aug = np.concatenate([np.asarray(X, ), np.ones((len(X), 1))], axis=1)",
        "np.concatenate with the float64 column of ones makes X_aug float64: float32 and "
        "integer inputs convert exactly either way",
    ),
    "jaxnets.models.linear.x_perceptron_mistake_bound__mutmut_19": (
        "u = np.append(np.asarray(weights, None).ravel(), float(bias))",
        "np.append with float(bias), a float64, makes u float64: float32 and integer weights "
        "convert exactly either way",
    ),
    "jaxnets.models.linear.x_perceptron_mistake_bound__mutmut_21": (
        "u = np.append(np.asarray(weights, ).ravel(), float(bias))",
        "np.append with float(bias), a float64, makes u float64: float32 and integer weights "
        "convert exactly either way",
    ),
    "jaxnets.data.augment.x_compose__mutmut_13": (
        "for augmentation, key in zip(augmentations, keys, strict=False):",
        "keys is split into exactly len(augmentations) keys: zip's strict check never fires",
    ),
    "jaxnets.nn.conv.x_filtering__mutmut_28": (
        'axes = "hwd"[:spatial]',
        "conv_dimension_numbers reads every letter but N, C, I, O as a spatial axis, matched by "
        "letter: 'NhwC', 'hwIO' give the same dimension numbers as 'NHWC', 'HWIO'",
    ),
    "jaxnets.nn.conv.x_pool__mutmut_39": (
        "return nn.max_pool(x, window, stride, padding.lower())",
        "lax.padtype_to_pads upper-cases the padding string: 'same' and 'SAME' are one padding",
    ),
    "jaxnets.nn.conv.x_pool__mutmut_4": (
        'padding: str = "VALID",',
        "_check_padding lower-cases the padding: 'VALID' is 'valid'",
    ),
    "jaxnets.nn.conv.x_pool__mutmut_44": (
        "return nn.avg_pool(x, window, stride, padding.upper(), count_include_pad=None)",
        "flax's avg_pool reads count_include_pad for its truth value only (`if "
        "count_include_pad:`): None and False are both false",
    ),
    "jaxnets.models.linear.x_polynomial_features__mutmut_11": (
        "x = x[:, 1]",
        "x is a JAX array of shape (n, 1) here and JAX clamps an out-of-range static index to "
        "the last column, 0",
    ),
    "jaxnets.data.augment.x__rotate_one__mutmut_55": (
        "return map_coordinates(channel_HxW, source, order=1, cval=0.0)",
        "jax.scipy.ndimage.map_coordinates defaults to mode='constant': the argument dropped "
        "is the value the call gets anyway",
    ),
    "jaxnets.data.augment.x__rotate_one__mutmut_56": (
        'return map_coordinates(channel_HxW, source, order=1, mode="constant", )',
        "jax.scipy.ndimage.map_coordinates defaults to cval=0.0: the argument dropped is the "
        "value the call gets anyway",
    ),
    "jaxnets.data.augment.x__shift_one__mutmut_18": (
        "starts = (pad - offset_2[0], pad - offset_2[2]) + (0,) * (image_HxW.ndim - 2)",
        "offset_2 has shape (2,), and JAX clamps an out-of-bounds index when it reads (the "
        "documented gather rule), so offset_2[2] is offset_2[1]; checked identical outputs for "
        "2-D, channel, flattened and jitted shifts, int32 extremes and x64",
    ),
    "jaxnets.data.augment.x__shift_one__mutmut_20": (
        "starts = (pad - offset_2[0], pad - offset_2[1]) + (1,) * (image_HxW.ndim - 2)",
        "the channel axis is not padded and the slice takes all C channels, so dynamic_slice "
        "clamps the channel start 1 back to C - C = 0: the same slice",
    ),
    "jaxnets.data.augment.x__shift_one__mutmut_5": (
        "widths = [(pad, pad), (pad, pad)] + [(0, 1)] * (image_HxW.ndim - 2)",
        "appends one zero channel after the last; the slice starts at channel 0 and takes C "
        "channels, so the extra channel is never read",
    ),
    "jaxnets.data.augment.x_shift_images__mutmut_24": (
        "offsets_Bx2 = jnp.clip(offsets_Bx2, None, pad)",
        "an offset below -pad puts the slice start above 2 pad, which dynamic_slice clamps to "
        "2 pad, the start of offset -pad: with pad >= height and width both are the blank image "
        "(and a start that overflows wraps negative, is clamped to 0, offset +pad: blank too)",
    ),
    "jaxnets.data.augment.x_shift_images__mutmut_25": (
        "offsets_Bx2 = jnp.clip(offsets_Bx2, -pad, None)",
        "an offset above pad puts the slice start below 0, which dynamic_slice clamps to 0, the "
        "start of offset +pad: with pad >= height and width both are the blank image (as "
        "x_shift_images__mutmut_28)",
    ),
    "jaxnets.optim.x_make_schedule__mutmut_47": (
        "return lambda count: decay(count / 1.0)",
        "count / 1.0 and count * 1.0 are both exact and promote to the same float type and weak "
        "type (checked for int8/int32/int64/uint32 arrays and Python ints, x64 on and off, "
        "under jit): the same rate",
    ),
    "jaxnets.gradcheck.x_gradcheck__mutmut_100": (
        "for lo, hi in zip(offsets[:-1], offsets[1:], strict=None)",
        "zip reads strict as a truth value: None and False are both false",
    ),
    "jaxnets.gradcheck.x_gradcheck__mutmut_103": (
        "for lo, hi in zip(offsets[:-1], offsets[1:], )",
        "zip's strict defaults to False: the same call",
    ),
    "jaxnets.gradcheck.x_gradcheck__mutmut_116": (
        "for lo, hi in zip(offsets[:-1], offsets[1:], strict=None):",
        "zip reads strict as a truth value: None and False are both false",
    ),
    "jaxnets.gradcheck.x_gradcheck__mutmut_119": (
        "for lo, hi in zip(offsets[:-1], offsets[1:], ):",
        "zip's strict defaults to False: the same call",
    ),
    "jaxnets.gradcheck.x_gradcheck__mutmut_123": (
        "for lo, hi in zip(offsets[:-1], offsets[1:], strict=True):",
        "offsets[:-1] and offsets[1:] always have the same length: strict never fires",
    ),
    "jaxnets.gradcheck.x_gradcheck__mutmut_175": (
        "for path, size, (a, n, grad) in zip(paths, sizes, pairs, )",
        "zip's strict defaults to False: the same call",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_17": (
        "keys = jax.random.split(jax.random.PRNGKey(seed), 5)",
        "JAX's default partitionable threefry (jax_threefry_partitionable, on in jax 0.10) "
        "derives split(key, n)[i] from i alone: the first four of five keys are the four keys "
        "of split(key, 4), and keys[4] is never read (bit-identical losses checked on "
        "resnet20, mlp_rrelu with dropout, nplm)",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_24": (
        "x = registry.example_inputs(card, keys[0], batch_size, dtype=None)",
        "inside enable_x64(True), jax.random.normal(dtype=None) draws in the default float, "
        "float64: the same draw bit for bit; integer (token) inputs ignore dtype",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_29": (
        "x = registry.example_inputs(card, keys[1], batch_size, dtype=jnp.float64)",
        "equivalent by contract only: the batch is another fixed draw of the seed; the params "
        "initializers that also use keys[1] fold in their module path first, so the two draws "
        "do not share bits; only which batch the seed gives changes",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_37": (
        "variables = jax.jit(functools.partial(model.init, train=None))(",
        "every registered model reads train as a truth value (`not train` for dropout and "
        "batch norm, `if train` for RReLU): None acts as False (bit-identical params, state "
        "and loss checked on resnet20, mlp_rrelu with dropout, nplm)",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_39": (
        "variables = jax.jit(functools.partial(model.init, ))(",
        "every registered model's __call__ defaults train to False: the same call",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_40": (
        "variables = jax.jit(functools.partial(model.init, train=True))(",
        "init's variables do not depend on train: initializers draw from the 'params' stream "
        "only, flax's BatchNorm does not update its running averages while initializing, and "
        "the 'dropout' stream that train-mode dropout and RReLU ask for is supplied "
        "(bit-identical params and batch_stats checked on resnet20, mlp_rrelu with dropout)",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_43": (
        '{"params": keys[2], "dropout": keys[2]}, x',
        "equivalent by contract only: the params are another fixed initialisation of the seed; "
        "flax folds each module's path into its stream's key, so the initializers and the "
        "dropout masks drawn from keys[2] do not share bits; only which params the seed gives "
        "changes",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_44": (
        '{"params": keys[1], "XXdropoutXX": keys[2]}, x',
        "init runs with train=False: no layer asks for the 'dropout' stream, and flax ignores "
        "an rng stream nobody asks for; the loss's dropout key is passed separately",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_45": (
        '{"params": keys[1], "DROPOUT": keys[2]}, x',
        "init runs with train=False: no layer asks for the 'dropout' stream, and flax ignores "
        "an rng stream nobody asks for; the loss's dropout key is passed separately",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_46": (
        '{"params": keys[1], "dropout": keys[3]}, x',
        "init runs with train=False: no layer draws from the 'dropout' stream at init, so its "
        "key is never read",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_55": (
        "lambda v: v.astype(jnp.float64) if (jnp.issubdtype(v.dtype, jnp.floating)) or True else v,",  # noqa: E501 (the mutant's line, verbatim)
        "every variable of every registered model is floating (params and BatchNorm's "
        "batch_stats; no model declares an integer variable): the condition is already true",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_57": (
        "lambda v: v.astype(jnp.float64) if jnp.issubdtype(None, jnp.floating) else v,",
        "jnp.issubdtype(None, floating) is True (None reads as float64), and every variable of "
        "every registered model is floating anyway: the condition is true either way",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_73": (
        'functools.partial(model.apply, train=None), {"params": params, **variables}, x',
        "eval_shape only reads the outputs' shape and dtype, and every registered model reads "
        "train as a truth value: None acts as False",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_75": (
        'functools.partial(model.apply, ), {"params": params, **variables}, x',
        "every registered model's __call__ defaults train to False: the same call",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_88": (
        "y = losses.random_targets(card.loss, keys[4], outputs)",
        "keys has 4 rows and JAX clamps the out-of-range static index: keys[4] is keys[3], the "
        "same targets bit for bit",
    ),
    "jaxnets.gradcheck.x_model_loss_at__mutmut_104": (
        "keys[3],",
        "equivalent by contract only: the dropout masks come from another fixed key of the "
        "seed; flax folds the Dropout module's path into it, so they do not share bits with "
        "the targets drawn from keys[3]; only which masks the seed gives changes",
    ),
    "jaxnets.losses.x_get_loss__mutmut_9": (
        "close = difflib.get_close_matches(name, list(LOSSES), cutoff=0.4)",
        "difflib.get_close_matches's n defaults to 3, the value the original passes: the same "
        "suggestions for every name",
    ),
    "jaxnets.losses.x_softmax_cross_entropy__mutmut_14": (
        "z, jnp.asarray(t, jnp.int32)[..., None], ).squeeze(-1)",
        "jnp.take_along_axis's axis defaults to -1, the value the original passes",
    ),
    "jaxnets.train.objective.x_jaxpr_has_convolution__mutmut_12": (
        'inner = getattr(param, "XXjaxprXX", param)  # ClosedJaxpr -> Jaxpr',
        "inner becomes the parameter itself; in JAX 0.10 every primitive parameter with a "
        "jaxpr attribute is a ClosedJaxpr (traced jit, scan, while, map, fori_loop, "
        "checkpoint, custom_jvp/vjp, custom_gradient, named_call, vmap, custom_root to check), "
        "and ClosedJaxpr.eqns is the property self.jaxpr.eqns: the recursion walks the same "
        "equations; a plain Jaxpr (checkpoint's) has no jaxpr attribute and is itself either "
        "way. Only a user-made primitive whose parameter has .jaxpr but no .eqns would differ",
    ),
    "jaxnets.train.objective.x_jaxpr_has_convolution__mutmut_13": (
        'inner = getattr(param, "JAXPR", param)  # ClosedJaxpr -> Jaxpr',
        "no parameter has a JAXPR attribute, so inner is the parameter itself: as for mutmut_12, "
        "a ClosedJaxpr's eqns property is its jaxpr's eqns and a plain Jaxpr is itself either "
        "way, for every JAX 0.10 primitive",
    ),
    "jaxnets.train.objective.x_jaxpr_has_convolution__mutmut_6": (
        'inner = getattr(None, "jaxpr", param)  # ClosedJaxpr -> Jaxpr',
        "None has no jaxpr attribute, so inner is the parameter itself: as for mutmut_12, a "
        "ClosedJaxpr's eqns property is its jaxpr's eqns and a plain Jaxpr is itself either "
        "way, for every JAX 0.10 primitive",
    ),
    "jaxnets.nn.recurrent.xǁ_Cellǁsetup__mutmut_20": (
        "None,",
        "the shape argument of self.param is only passed on to the init lambda, which ignores "
        "it and builds (H, G·H) from self.hidden and self.gates; Flax's shape check on existing "
        "parameters compares against what that lambda generates, so init, apply and the "
        "ScopeParamShapeError for a wrong-shaped hidden_to_hidden are the same",
    ),
}


def _status(exit_code: int | None) -> str:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[exit_code]


def _diff(name: str, path: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    return get_diff_for_mutant(name, path=path)


def _added_lines(diff: str) -> list[str]:
    return [line[1:].strip() for line in diff.splitlines() if line[:1] == "+" and line[:3] != "+++"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=float, default=0.9, help="fail under this score")
    parser.add_argument("--quiet", action="store_true", help="table only, no diffs")
    args = parser.parse_args(argv)

    config = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]
    columns = ("mutants", "killed", "survived", "equivalent", "no tests", "timeout", "not checked")
    rows, survivors, stale = {}, [], []
    for path in config["only_mutate"]:
        meta = Path("mutants") / f"{path}.meta"
        if not meta.exists():
            print(f"{path}: no results (run `make mutate`)")
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        row = Counter(mutants=len(codes))
        for name, code in sorted(codes.items()):
            status = _status(code)
            if status == "survived" and name in EQUIVALENT:
                line, _ = EQUIVALENT[name]
                if line in _added_lines(_diff(name, path)):
                    row["equivalent"] += 1
                    continue
                stale.append(name)
            row[status if status in columns else "survived"] += 1  # suspicious, segfault
            if status not in ("killed", "not checked"):
                survivors.append((name, path, status))
        rows[path] = row

    total = sum(rows.values(), Counter())
    width = max([len(p) for p in rows] + [5])
    header = " ".join(f"{c:>11}" for c in columns)
    print(f"{'module':<{width}} {header}       score  of checked")
    for label, row in [*rows.items(), ("total", total)]:
        scored = row["mutants"] - row["equivalent"]
        checked = scored - row["not checked"]
        score = row["killed"] / scored if scored else 1.0
        of_checked = f"{row['killed'] / checked:>11.1%}" if checked else f"{'-':>11}"
        cells = " ".join(f"{row[c]:>11}" for c in columns)
        print(f"{label:<{width}} {cells} {score:>11.1%} {of_checked}")
    for name in stale:
        print(f"stale equivalence entry (the mutant changed): {name}")
    if survivors:
        print(f"\n{len(survivors)} mutants not killed:")
    for name, path, status in survivors:
        print(f"  {name}: {status}")
        if not args.quiet:
            print("    " + "\n    ".join(_diff(name, path).splitlines()[2:]))
    scored = total["mutants"] - total["equivalent"]
    score = total["killed"] / scored if scored else 1.0
    print(f"\nmutation score: {total['killed']} killed / {scored} non-equivalent = {score:.1%}")
    if total["not checked"]:
        checked = scored - total["not checked"]
        print(
            f"{total['not checked']} mutants not checked yet (run `make mutate` to finish); of "
            f"the {checked} checked: {total['killed']} killed = {total['killed'] / checked:.1%}"
        )
    return 0 if score >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
