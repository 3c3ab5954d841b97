"""Record PyTorch's outputs for the interop equality tests (tests/test_interop.py).

Run by hand where torch is installed (``make torch-references``, or
``.venv/bin/python tests/torch_references.py [CASE ...]``); CI has no torch, so the test
compares jaxnets with the outputs recorded here, in ``tests/torch_references/<case>.npz``.

Each case of :data:`CASES` names a jaxnets model with hyperparameters, one example's input
shape (jaxnets' channels-last layout) and a dtype. :func:`random_state_dict` draws the
weights from a numpy seed in the PyTorch layout of :func:`jaxnets.interop.to_torch`, with
batch-norm statistics far from (0, 1), and :func:`random_inputs` draws the inputs; neither needs
torch, so the test regenerates both. Only torch's outputs are stored (a few hundred numbers).

The PyTorch side is PyTorch's own code: ``torch.nn`` layers, and torchvision's model
definitions (``torchvision/models/{resnet,vgg,alexnet}.py``). torchvision's compiled operators
do not load beside the pinned CPU torch ("operator torchvision::nms does not exist"), so
when ``import torchvision`` fails, :func:`torchvision_models` reads those three pure-Python
files from the torchvision wheel (``$TORCHVISION_WHEEL``, else ``/tmp/tv/torchvision-*.whl``:
``pip download torchvision==0.28.0 --no-deps -d /tmp/tv``) and executes them as modules of a
stand-in package whose few imports (weights enums, ``_log_api_usage_once``, the legacy-
argument decorator, the preset transforms) are inert stubs; no torchvision code is copied.
"""

from __future__ import annotations

import dataclasses
import enum
import glob
import os
import sys
import types
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxnets import create_model, model_card
from jaxnets.interop import to_torch

DIR = Path(__file__).with_name("torch_references")
TORCHVISION_FILES = ("resnet", "vgg", "alexnet")


@dataclasses.dataclass(frozen=True)
class Case:
    """One equality check: ``model`` with ``hyperparameters`` on ``batch`` inputs of
    ``input_shape`` (jaxnets layout) in ``dtype``; ``torch_model(tv)`` builds the PyTorch
    module (from torchvision's model modules ``tv`` when ``torchvision``) and returns
    ``(module, forward)``."""

    model: str
    hyperparameters: dict[str, Any]
    input_shape: tuple[int, ...]
    torch_model: Callable[[Any], tuple[Any, Callable[[Any], Any]]]
    dtype: str = "float32"
    batch: int = 2
    torchvision: bool = False


def _plain(build: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, Callable]]:
    """A builder whose module is called as it is."""

    def make(tv):
        module = build(tv)
        return module, module

    return make


def _sequence(kind: str, features: int, hidden: int, outputs: int, layers: int, bi: bool):
    """torch.nn RNN/LSTM/GRU + Linear on the top layer's final h (both directions)."""

    def make(tv):
        import torch

        options = {"nonlinearity": "relu"} if kind == "RNN" else {}  # the case's relu_rnn
        rnn = getattr(torch.nn, kind)(
            features, hidden, layers, batch_first=True, bidirectional=bi, **options
        )
        module = torch.nn.ModuleDict(
            {"recurrent": rnn, "readout": torch.nn.Linear(hidden * (1 + bi), outputs)}
        )

        def forward(x):
            _, h_n = rnn(x)
            h_n = h_n[0] if kind == "LSTM" else h_n
            last = torch.cat([h_n[-2], h_n[-1]], -1) if bi else h_n[-1]
            return module["readout"](last)

        return module, forward

    return make


def _char_lm(tv):
    import torch

    nn = torch.nn
    module = nn.ModuleDict(
        {"embedding": nn.Embedding(5, 3), "recurrent": nn.LSTM(3, 4, 2, batch_first=True)}
    )
    module["readout"] = nn.Linear(4, 5)
    return module, lambda x: module["readout"](module["recurrent"](module["embedding"](x))[0])


def _lenet(tv):
    import torch.nn as nn

    return nn.Sequential(
        *(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh()),
        *(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84)),
        *(nn.Tanh(), nn.Linear(84, 10)),
    )


def _mlp(activation: Callable[[Any, int], Any]):
    def build(tv):
        import torch.nn as nn

        return nn.Sequential(
            nn.Linear(6, 5), activation(nn, 5), nn.Linear(5, 4), activation(nn, 4), nn.Linear(4, 3)
        )

    return build


def _narrow(classifier: Any, widths: tuple[int, ...]) -> Any:
    """torchvision's classifier ``nn.Sequential`` with its Linear layers rebuilt at ``widths``
    (inputs, hidden..., outputs), every other module and the order kept: torchvision fixes
    VGG's at 25088-4096-4096 (119M weights), too slow to draw for a unit test."""
    import torch

    linears = [i for i, layer in enumerate(classifier) if isinstance(layer, torch.nn.Linear)]
    for i, n_in, n_out in zip(linears, widths[:-1], widths[1:], strict=True):
        classifier[i] = torch.nn.Linear(n_in, n_out)
    return classifier


def _vgg(tv: Any, batch_norm: bool) -> Any:
    """torchvision's VGG on torchvision's make_layers of two stages (4 and 8 maps), 7x7 pool."""
    model = tv.vgg.VGG(tv.vgg.make_layers([4, "M", 8, "M"], batch_norm=batch_norm), 3)
    model.classifier = _narrow(model.classifier, (8 * 7 * 7, 16, 16, 3))
    return model


def _alexnet(tv: Any) -> Any:
    model = tv.alexnet.alexnet(num_classes=10)
    model.classifier = _narrow(model.classifier, (256 * 6 * 6, 16, 16, 10))
    return model


_SMALL_VGG = {"depths": (1, 1), "widths": (4, 8), "hidden": (16, 16), "num_classes": 3}
_SMALL_RESNET = {"stage_sizes": (1, 1, 1, 1), "num_classes": 10}
CASES: dict[str, Case] = {
    "resnet18": Case(
        "resnet18", {}, (32, 32, 3), _plain(lambda tv: tv.resnet.resnet18()), torchvision=True
    ),
    "resnet50_1111": Case(
        "resnet50",
        _SMALL_RESNET,
        (32, 32, 3),
        _plain(lambda tv: tv.resnet.ResNet(tv.resnet.Bottleneck, [1, 1, 1, 1], num_classes=10)),
        torchvision=True,
    ),
    # 32x32 -> 8x8 maps: the adaptive pool's 7 bins overlap
    "vgg11": Case(
        "vgg11", _SMALL_VGG, (32, 32, 3), _plain(lambda tv: _vgg(tv, False)), torchvision=True
    ),
    "vgg11_bn": Case(
        "vgg11",
        {**_SMALL_VGG, "batch_norm": True},
        (32, 32, 3),
        _plain(lambda tv: _vgg(tv, True)),
        torchvision=True,
    ),
    "alexnet": Case(
        "alexnet",
        {"num_classes": 10, "hidden": (16, 16)},
        (64, 64, 3),
        _plain(_alexnet),
        torchvision=True,
    ),
    "lenet5": Case("lenet5", {}, (32, 32, 1), _plain(_lenet)),
    "lenet5_f64": Case("lenet5", {}, (32, 32, 1), _plain(_lenet), dtype="float64"),
    "vgg11_bn_f64": Case(
        "vgg11",
        {**_SMALL_VGG, "batch_norm": True},
        (20, 20, 3),  # 5x5 maps: the 7 bins of 1 or 2 pixels overlap
        _plain(lambda tv: _vgg(tv, True)),
        dtype="float64",
        torchvision=True,
    ),
    "resnet50_1111_f64": Case(
        "resnet50",
        _SMALL_RESNET,
        (32, 32, 3),
        _plain(lambda tv: tv.resnet.ResNet(tv.resnet.Bottleneck, [1, 1, 1, 1], num_classes=10)),
        dtype="float64",
        torchvision=True,
    ),
    "mlp_prelu": Case(
        "mlp_prelu",
        {"hidden": (5, 4), "num_outputs": 3},
        (6,),
        _plain(_mlp(lambda nn, width: nn.PReLU(width))),
    ),
    "mlp_elu": Case(
        "mlp_elu", {"hidden": (5, 4), "num_outputs": 3}, (6,), _plain(_mlp(lambda nn, _: nn.ELU()))
    ),
    "lstm_classifier": Case(
        "lstm_classifier",
        {"hidden": 4, "layers": 2, "bidirectional": True},
        (5, 3),
        _sequence("LSTM", 3, 4, 2, 2, True),
    ),
    "gru_regressor": Case(
        "gru_regressor", {"hidden": 4, "layers": 2}, (5, 3), _sequence("GRU", 3, 4, 1, 2, False)
    ),
    "rnn_classifier_relu": Case(
        "rnn_classifier",
        {"hidden": 4, "cell": "relu_rnn", "bidirectional": True},
        (5, 3),
        _sequence("RNN", 3, 4, 2, 1, True),
    ),
    "lstm_classifier_f64": Case(
        "lstm_classifier",
        {"hidden": 4, "layers": 2, "bidirectional": True},
        (5, 3),
        _sequence("LSTM", 3, 4, 2, 2, True),
        dtype="float64",
    ),
    "gru_classifier_f64": Case(
        "gru_classifier",
        {"hidden": 4, "bidirectional": True},
        (5, 3),
        _sequence("GRU", 3, 4, 2, 1, True),
        dtype="float64",
    ),
    "char_lm": Case(
        "char_lm", {"vocab_size": 5, "embed": 3, "hidden": 4, "layers": 2}, (6,), _char_lm
    ),
}


def _torch_shapes(case: Case) -> dict[str, np.ndarray]:
    """Zero arrays in the PyTorch layout of ``case``'s model (from jaxnets alone)."""
    model = create_model(case.model, **case.hyperparameters)
    card = model_card(case.model)
    x = jax.ShapeDtypeStruct((1, *case.input_shape), np.dtype(card.input_dtype))
    shapes = jax.eval_shape(model.init, {"params": jax.random.key(0)}, x)
    zeros = jax.tree.map(lambda s: np.broadcast_to(np.float32(0), s.shape), shapes)
    return to_torch(case.model, zeros, **case.hyperparameters)


def random_state_dict(case: Case, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded weights of ``case`` in its PyTorch layout: weights N(0, 1/fan_in), biases
    N(0, 0.1), batch-norm scale and running_var in [0.5, 2], running_mean N(0, 0.5)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(case.dtype)
    state = {}
    shapes = _torch_shapes(case)
    for key, zeros in shapes.items():
        layer, leaf = key.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            state[key] = zeros.astype(np.int64)
            continue
        shape = zeros.shape
        batch_norm = f"{layer}.running_mean" in shapes
        if leaf == "running_var" or (leaf == "weight" and batch_norm):
            value = rng.uniform(0.5, 2.0, shape)
        elif leaf == "running_mean" or len(shape) == 1:
            value = rng.normal(0.0, 0.5 if leaf == "running_mean" else 0.1, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.standard_normal(shape, np.float32) / np.sqrt(fan_in)
        state[key] = value.astype(dtype)
    return state


def random_inputs(case: Case, seed: int = 1) -> np.ndarray:
    """Seeded inputs (batch, *input_shape): token ids for token models, else N(0, 1)."""
    rng = np.random.default_rng(seed)
    card = model_card(case.model)
    shape = (case.batch, *case.input_shape)
    if np.issubdtype(np.dtype(card.input_dtype), np.integer):
        vocab = case.hyperparameters.get("vocab_size", card.input_range)
        return rng.integers(0, vocab, shape).astype(np.int32)
    return rng.standard_normal(shape).astype(case.dtype)


def torchvision_models() -> types.SimpleNamespace:
    """torchvision's ``resnet``, ``vgg`` and ``alexnet`` model modules: the installed package's
    when it imports, else the files of the wheel run under stubs (see the module docstring)."""
    try:
        import torchvision.models as installed

        return types.SimpleNamespace(**{n: getattr(installed, n) for n in TORCHVISION_FILES})
    except Exception:  # noqa: BLE001 - the compiled operators fail in many ways
        pass
    wheels = [os.environ.get("TORCHVISION_WHEEL", "")] + sorted(
        glob.glob("/tmp/tv/torchvision-*.whl")
    )
    wheel = next((w for w in wheels if w and os.path.exists(w)), None)
    if wheel is None:
        raise FileNotFoundError(
            "torchvision does not import and no wheel was found: set TORCHVISION_WHEEL or run "
            "`pip download torchvision==0.28.0 --no-deps -d /tmp/tv`"
        )
    _install_stubs()
    modules = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in TORCHVISION_FILES:
            source = archive.read(f"torchvision/models/{name}.py").decode()
            module = types.ModuleType(f"_tvstub.models.{name}")
            module.__package__ = "_tvstub.models"
            sys.modules[module.__name__] = module
            exec(compile(source, f"{wheel}!torchvision/models/{name}.py", "exec"), module.__dict__)
            modules[name] = module
    return types.SimpleNamespace(**modules)


class _WeightsEnum(enum.Enum):
    """Stand-in for torchvision's WeightsEnum: no pretrained weights are ever fetched."""

    @classmethod
    def verify(cls, weights):
        if weights is not None:
            raise ValueError("the stubbed torchvision definitions load no pretrained weights")
        return None


def _decorator_factory(*args, **kwargs):
    return lambda fn: fn


def _install_stubs() -> None:
    """Inert modules for the imports of torchvision's model files (package ``_tvstub``)."""
    stubs = {
        "_tvstub": {},
        "_tvstub.transforms": {},
        "_tvstub.transforms._presets": {"ImageClassification": object},
        "_tvstub.utils": {"_log_api_usage_once": lambda obj: None},
        "_tvstub.models": {},
        "_tvstub.models._api": {
            "register_model": _decorator_factory,
            "Weights": lambda **fields: tuple(sorted(fields)),
            "WeightsEnum": _WeightsEnum,
        },
        "_tvstub.models._meta": {"_IMAGENET_CATEGORIES": []},
        "_tvstub.models._utils": {
            "_ovewrite_named_param": lambda kwargs, name, value: kwargs.setdefault(name, value),
            "handle_legacy_interface": _decorator_factory,
        },
    }
    for name, attributes in stubs.items():
        module = sys.modules.setdefault(name, types.ModuleType(name))
        module.__path__ = []
        module.__dict__.update(attributes)


def torch_outputs(case: Case, tv: Any) -> np.ndarray:
    """PyTorch's outputs for ``case``: its module loads :func:`random_state_dict` (strictly:
    every key and shape must match) and runs on :func:`random_inputs` in eval mode."""
    import torch

    with torch.device("meta"):  # no time spent initialising weights that are replaced
        module, forward = case.torch_model(tv)
    module = module.to_empty(device="cpu").to(getattr(torch, case.dtype)).eval()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in random_state_dict(case).items()})
    x = random_inputs(case)
    if x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    with torch.no_grad():
        return forward(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def main(names: list[str]) -> None:
    """Record every case (or those named) in tests/torch_references/<case>.npz."""
    import torch

    tv = torchvision_models()
    DIR.mkdir(exist_ok=True)
    for name in names or list(CASES):
        output = torch_outputs(CASES[name], tv)
        np.savez_compressed(DIR / f"{name}.npz", output=output, torch=torch.__version__)
        print(f"{name}: outputs {output.shape} {output.dtype}")


if __name__ == "__main__":
    main(sys.argv[1:])
