import dataclasses
import importlib

import pytest

import jaxnets
from jaxnets import registry


def test_unknown_name_lists_close_matches():
    with pytest.raises(jaxnets.UnknownModelError) as info:
        jaxnets.create_model("softmax_regresion")
    message = str(info.value)
    assert "unknown model 'softmax_regresion'" in message
    assert "did you mean 'softmax_regression'" in message and "list_models()" in message
    with pytest.raises(jaxnets.UnknownModelError, match=r"unknown model 'zzz'; see"):
        jaxnets.model_card("zzz")


def test_list_models_glob():
    mlps = jaxnets.list_models("mlp*")
    assert mlps and all(n.startswith("mlp") for n in mlps)
    assert jaxnets.list_models("no_such_*") == []
    assert jaxnets.list_models() == sorted(jaxnets.list_models())


def test_create_model_overrides_defaults():
    model = jaxnets.create_model("softmax_regression", num_outputs=3)
    assert model.num_outputs == 3
    assert jaxnets.create_model("softmax_regression").num_outputs == 10


def test_unknown_hyperparameter_names_the_accepted_ones():
    with pytest.raises(TypeError, match="has no hyperparameter 'widths'; it accepts"):
        jaxnets.create_model("softmax_regression", widths=3)


def test_registering_a_name_twice_is_an_error():
    card = jaxnets.model_card("softmax_regression")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model(
            card.name,
            card.builder,
            family="x",
            lecture="004",
            reference="",
            task="classification",
            input_shape=(1,),
            loss="squared_error",
        )


def test_check_input_names_shape_and_dtype():
    card = jaxnets.model_card("softmax_regression")
    import numpy as np

    with pytest.raises(jaxnets.InputSpecError, match=r"expects input of shape \(batch, 64\)"):
        registry.check_input(card, np.zeros((5, 8, 8), np.float32))
    with pytest.raises(jaxnets.InputSpecError, match="dtype float32; got .* int64"):
        registry.check_input(card, np.zeros((5, 64), np.int64))
    registry.check_input(card, np.zeros((5, 64), np.float32))
    registry.check_input(card, np.zeros((5, 784), np.float64))  # sizes are the model's to infer


@pytest.mark.parametrize("name", jaxnets.list_models())
def test_card_names_the_module_and_builder_create_model_uses(name):
    card = jaxnets.model_card(name)
    module_name, attribute = card.module.rsplit(".", 1)
    found = getattr(importlib.import_module(module_name), attribute)
    assert found is getattr(card.builder, "func", card.builder)


def test_module_is_derived_from_the_builder_unless_given():
    card = jaxnets.model_card("lenet5")
    assert card.module == "jaxnets.models.cnn.LeNet5"
    assert jaxnets.model_card("vgg11").module == "jaxnets.models.cnn.VGG"  # a partial
    assert registry.builder_path(registry.builder_path) == "jaxnets.registry.builder_path"
    assert dataclasses.replace(card, module="pkg.mod.Make").module == "pkg.mod.Make"
    with pytest.raises(ValueError, match="pass module="):
        dataclasses.replace(card, builder=lambda: None, module="")
    local = dataclasses.replace(card, builder=lambda: None, module="pkg.mod.make")
    assert local.module == "pkg.mod.make"


def test_models_table_shows_family_and_module():
    from jaxnets.experiment import models_markdown

    lines = models_markdown().splitlines()
    assert lines[0] == "| model | family | module | task | lecture | description |"
    assert len(lines) == 2 + len(jaxnets.list_models())
    assert lines[2 + jaxnets.list_models().index("nice")].startswith(
        "| `nice` | flows | `jaxnets.models.nice.NICE` | density |"
    )
