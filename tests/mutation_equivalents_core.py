"""Surviving mutants of `make mutate` argued equivalent, in the losses, gradcheck, optimizers,
augmentation and training engine (jaxnets.losses, jaxnets.gradcheck, jaxnets.optim,
jaxnets.data.augment, jaxnets.train.*); read by tests/mutation_score.py.

Mutant name -> (a line the mutant writes, without the "+", why it cannot change behaviour).
"""

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
    "jaxnets.gradcheck.x_map_in_chunks__mutmut_12": (
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
    "jaxnets.data.augment.x_compose__mutmut_13": (
        "for augmentation, key in zip(augmentations, keys, strict=False):",
        "keys is split into exactly len(augmentations) keys: zip's strict check never fires",
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
}
