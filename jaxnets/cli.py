"""The ``jaxnets`` console script: ``list [PATTERN]``, ``info NAME``, ``gradcheck NAME``,
``export NAME --out FILE`` (:mod:`jaxnets.export`), ``launch -n P SCRIPT [ARGS...]``
(:mod:`jaxnets.launch`).

``info`` prints the model card, the parameter shapes and the per-layer table of seed 004,
Lecture 10 §3 (Table 1 at line 2446: units, connections and weights per layer), with receptive
fields and FLOPs (:mod:`jaxnets.inspect`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import jax
import numpy as np

from jaxnets import inspect, registry

__all__ = ["layer_table", "main", "parameter_table"]


def _model_and_input(name: str, tiny: bool) -> tuple:
    card = registry.model_card(name)
    model = registry.create_model(name, **(card.test_config if tiny else {}))
    return model, (card.tiny_input_shape if tiny else card.input_shape), np.dtype(card.input_dtype)


def parameter_table(name: str, *, tiny: bool = False) -> str:
    """A table of the model's parameters (path, shape, count) and their total.

    Shapes come from ``jax.eval_shape`` of ``init``, so nothing is computed.
    """
    model, input_shape, dtype = _model_and_input(name, tiny)
    x = jax.ShapeDtypeStruct((1, *input_shape), dtype)
    keys = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
    shapes = jax.eval_shape(lambda x: model.init(keys, x, train=False), x)
    rows = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(shapes):
        rows.append(
            (
                "/".join(str(getattr(k, "key", k)) for k in path),
                leaf.shape,
                int(np.prod(leaf.shape)),
            )
        )
    width = max([len(r[0]) for r in rows] + [9])
    lines = [f"{'parameter':<{width}}  {'shape':<18} {'count':>10}"]
    lines += [f"{p:<{width}}  {str(s):<18} {n:>10,}" for p, s, n in rows]
    lines.append(f"{'total':<{width}}  {'':<18} {sum(r[2] for r in rows):>10,}")
    return "\n".join(lines)


def layer_table(name: str, *, tiny: bool = False) -> inspect.LayerTable:
    """The per-layer table of Lecture 10 (units, connections, weights, receptive fields,
    FLOPs) of a registered model on one example of its card's input shape."""
    model, input_shape, dtype = _model_and_input(name, tiny)
    return inspect.layer_table(model, input_shape, dtype=dtype)


def _card_text(card: registry.ModelCard) -> str:
    fields = [
        ("name", card.name),
        ("family", card.family),
        ("module", card.module),
        ("description", card.description),
        ("lecture", card.lecture),
        ("reference", card.reference),
        ("task", card.task),
        ("input", f"(batch, {', '.join(map(str, card.input_shape))}) {card.input_dtype}"),
        ("default loss", card.loss),
        ("defaults", dict(card.defaults)),
        ("tiny config", dict(card.test_config)),
        ("per-example grads", "yes" if card.per_example_grads else "no (examples interact)"),
    ]
    return "\n".join(f"{k + ':':<19}{v}" for k, v in fields)


def _cmd_list(args) -> int:
    names = registry.list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    width = max(map(len, names))
    for n in names:
        card = registry.model_card(n)
        print(f"{n:<{width}}  {card.family:<8}  {card.description}")
    return 0


def _cmd_info(args) -> int:
    print(_card_text(registry.model_card(args.name)))
    print()
    print(parameter_table(args.name, tiny=args.tiny))
    print()
    print(layer_table(args.name, tiny=args.tiny))
    return 0


def _cmd_gradcheck(args) -> int:
    from jaxnets.gradcheck import GradcheckError, gradcheck_model

    try:
        report = gradcheck_model(args.name, mode=args.mode, seed=args.seed, tol=args.tol)
    except GradcheckError as err:
        print(err, file=sys.stderr)
        return 1
    print(report)
    return 0


def _cmd_export(args) -> int:
    from jaxnets.export import ExportError, describe, export_model
    from jaxnets.weights import WeightsError, load_weights

    try:
        if args.weights is None:
            config = dict(registry.model_card(args.name).test_config) if args.tiny else {}
            exported = export_model(
                args.name, out=args.out, batch=args.batch, seed=args.seed, **config
            )
        else:
            weights = load_weights(args.weights)
            if weights.name != args.name or args.tiny:
                raise WeightsError(
                    f"{args.weights} holds {weights.name!r} weights with their own "
                    f"hyperparameters; run: jaxnets export {weights.name} --weights "
                    f"{args.weights} --out {args.out} (without --tiny)"
                )
            exported = export_model(
                args.name,
                weights.variables,
                out=args.out,
                batch=args.batch,
                input_shape=weights.input_shape,
                **weights.hyperparameters,
            )
    except (ExportError, WeightsError) as err:
        print(f"jaxnets: error: {err}", file=sys.stderr)
        return 1
    print(describe(exported, args.out))
    return 0


def _relative_tolerance(text: str) -> float:
    """argparse type for --tol: a relative error lies in [0, 1], so only 0 < tol < 1 can fail."""
    try:
        tol = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < tol < 1:
        effect = "fail every gradient" if tol <= 0 else "accept every gradient"  # NaN: accept
        raise argparse.ArgumentTypeError(
            f"{text} would {effect}; give a relative error in (0, 1), e.g. 1e-6"
        )
    return tol


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxnets", description="Browse, check and export the jaxnets model zoo."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered models (optionally matching a glob)")
    p.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'mlp*'")
    p.set_defaults(run=_cmd_list)
    p = sub.add_parser("info", help="a model's card, parameter table and per-layer table")
    p.add_argument("name")
    p.add_argument(
        "--tiny", action="store_true", help="use the tiny test config and its input shape"
    )
    p.set_defaults(run=_cmd_info)
    p = sub.add_parser(
        "gradcheck", help="float64 finite-difference check of a model's gradients (tiny config)"
    )
    p.add_argument("name")
    p.add_argument("--mode", choices=("auto", "full", "directions"), default="auto")
    p.add_argument(
        "--tol",
        type=_relative_tolerance,
        default=1e-6,
        help="largest accepted relative error, in (0, 1) (default 1e-6)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_cmd_gradcheck)
    p = sub.add_parser(
        "export",
        help="write a model's inference function (train=False) as a serialized jax.export "
        "artifact (StableHLO, symbolic batch, CPU and CUDA) that runs with jax alone",
    )
    p.add_argument("name")
    p.add_argument("--out", required=True, help="the file to write (e.g. lenet5.jaxexport)")
    p.add_argument(
        "--weights",
        metavar="PATH",
        help="a weights file (jaxnets.weights.save_weights) of model NAME, whose "
        "hyperparameters and input shape it uses; without it the variables are initialised "
        "from --seed",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="without --weights: initialise the variables as Trainer.init(PRNGKey(SEED), x) "
        "does (default 0)",
    )
    p.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help="export for batch size N only (default: a symbolic batch dimension)",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="without --weights: the card's tiny test config and its input shape",
    )
    p.set_defaults(run=_cmd_export)
    sub.add_parser(
        "launch",
        add_help=False,
        help="run a script as P local processes of one jax.distributed run "
        "(jaxnets launch -n P [--devices-per-process K] SCRIPT [ARGS...])",
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["launch"]:  # the script's own arguments pass through untouched
        from jaxnets import launch

        return launch.main(argv[1:])
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except registry.UnknownModelError as err:
        print(f"jaxnets: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
