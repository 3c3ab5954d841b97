"""Surviving mutants of `make mutate` argued equivalent, in the layers and models
(jaxnets.nn.conv, jaxnets.nn.recurrent, jaxnets.models.linear); read by tests/mutation_score.py.

Mutant name -> (a line the mutant writes, without the "+", why it cannot change behaviour).
"""

_PROMOTES_EXACTLY = (
    "the other operand is float64, and NumPy promotes this one to float64 exactly (float32 and "
    "integers are exact in float64) before the product: the same sums"
)

EQUIVALENT: dict[str, tuple[str, str]] = {
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
    "jaxnets.nn.recurrent.xǁ_Cellǁsetup__mutmut_20": (
        "None,",
        "the shape argument of self.param is only passed on to the init lambda, which ignores "
        "it and builds (H, G·H) from self.hidden and self.gates; Flax's shape check on existing "
        "parameters compares against what that lambda generates, so init, apply and the "
        "ScopeParamShapeError for a wrong-shaped hidden_to_hidden are the same",
    ),
}
