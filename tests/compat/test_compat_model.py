"""Model API against transformers: loading options, labels, gradients of returned states."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import max_abs_diff, randomize_, tiny_config_kwargs, transformers_config

import mask2former
from mask2former import (
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    Mask2FormerImageProcessor,
    Mask2FormerModel,
)

transformers = pytest.importorskip("transformers")

HIDDEN_FIELDS = ("encoder_hidden_states", "pixel_decoder_hidden_states", "transformer_decoder_hidden_states")
LAST_FIELDS = ("encoder_last_hidden_state", "pixel_decoder_last_hidden_state",
               "transformer_decoder_last_hidden_state")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny transformers checkpoint in ``<dir>/sub`` and the transformers model that wrote it."""
    directory = tmp_path_factory.mktemp("compat_model")
    torch.manual_seed(0)
    reference = transformers.Mask2FormerForUniversalSegmentation(transformers_config(**tiny_config_kwargs()))
    randomize_(reference, 0).eval()
    reference.save_pretrained(directory / "sub")
    return directory, reference


def _labels(height: int, width: int):
    masks = torch.zeros(2, height, width)
    masks[0, : height // 2] = 1
    masks[1, height // 2 :] = 1
    return [masks], [torch.tensor([0, 2])]


def test_main_input_name():
    for library in (mask2former, transformers):
        assert library.Mask2FormerModel.main_input_name == "pixel_values"
        assert library.Mask2FormerForUniversalSegmentation.main_input_name == "pixel_values"


@pytest.mark.parametrize("model_class", ["Mask2FormerForUniversalSegmentation", "Mask2FormerModel"])
def test_output_loading_info_and_subfolder(checkpoint, model_class):
    directory, _ = checkpoint
    infos = {}
    for name, library in (("ours", mask2former), ("transformers", transformers)):
        model, info = getattr(library, model_class).from_pretrained(directory, subfolder="sub",
                                                                    output_loading_info=True)
        assert isinstance(model, getattr(library, model_class)) and not model.training
        infos[name] = info
    assert infos["ours"] == infos["transformers"]
    if model_class == "Mask2FormerModel":
        assert {"class_predictor.weight", "class_predictor.bias"} <= infos["ours"]["unexpected_keys"]


def test_config_keywords_apply_and_unknown_keywords_raise(checkpoint):
    directory, _ = checkpoint
    for library in (mask2former, transformers):
        model = library.Mask2FormerForUniversalSegmentation.from_pretrained(directory / "sub",
                                                                           output_hidden_states=True)
        assert model.config.output_hidden_states is True
        with pytest.raises(TypeError, match="not_an_option"):
            library.Mask2FormerForUniversalSegmentation.from_pretrained(directory / "sub", not_an_option=1)
    ours = Mask2FormerForUniversalSegmentation.from_pretrained(directory / "sub", output_hidden_states=True)
    assert "not_an_option" not in ours.config.to_dict()


@pytest.mark.parametrize("source", ["ours", "transformers"])
def test_from_none_with_config_and_state_dict(checkpoint, source):
    directory, reference = checkpoint
    config = Mask2FormerConfig.from_pretrained(directory / "sub")
    state_dict = reference.state_dict() if source == "transformers" else (
        Mask2FormerForUniversalSegmentation.from_pretrained(directory / "sub").state_dict())
    model = Mask2FormerForUniversalSegmentation.from_pretrained(None, config=config, state_dict=state_dict)
    pixel_values = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_abs_diff(model(pixel_values).class_queries_logits,
                            reference(pixel_values).class_queries_logits) < 1e-4
    with pytest.raises(ValueError, match="state_dict"):
        Mask2FormerForUniversalSegmentation.from_pretrained(None, config=config)


@pytest.mark.parametrize("given", ["mask_labels", "class_labels"])
def test_one_kind_of_labels_gives_outputs_without_loss(checkpoint, given):
    directory, reference = checkpoint
    ours = Mask2FormerForUniversalSegmentation.from_pretrained(directory / "sub")
    pixel_values = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    masks, classes = _labels(64, 64)
    labels = {"mask_labels": masks} if given == "mask_labels" else {"class_labels": classes}
    with torch.no_grad(), pytest.warns(UserWarning, match="no loss"):
        got = ours(pixel_values, **labels)
    with torch.no_grad():
        expected = reference(pixel_values, **labels)
    assert got.loss is None and expected.loss is None
    assert max_abs_diff(got.masks_queries_logits, expected.masks_queries_logits) < 1e-4


@pytest.mark.parametrize("model_class", [Mask2FormerForUniversalSegmentation, Mask2FormerModel])
def test_every_returned_hidden_state_gets_a_gradient(model_class):
    torch.manual_seed(0)
    model = model_class(Mask2FormerConfig(**tiny_config_kwargs()))
    model.train()
    if model_class is Mask2FormerModel:
        out = model(torch.randn(2, 3, 64, 64), output_hidden_states=True)
        fields = HIDDEN_FIELDS + ("transformer_decoder_intermediate_states",)
    else:  # model(**inputs) with the processor's inputs, targets included
        label_maps = [np.repeat(np.arange(3, dtype=np.uint8), 22)[None, :64].repeat(64, 0), np.full((48, 64), 2, np.uint8)]
        images = [np.full((64, 64, 3), 90, np.uint8), np.full((48, 64, 3), 200, np.uint8)]
        inputs = Mask2FormerImageProcessor(do_resize=False)(images, label_maps, return_tensors="pt")
        out = model(**inputs, output_hidden_states=True)
        fields = HIDDEN_FIELDS
    states = [state for field in fields for state in getattr(out, field)]
    states += [getattr(out, field) for field in LAST_FIELDS]
    for state in states:
        state.retain_grad()
    if model_class is Mask2FormerModel:  # a stand-in loss on every layer's mask logits
        loss = sum(masks.square().mean() for masks in out.masks_queries_logits)
    else:
        loss = out.loss
    loss.backward()
    missing = [index for index, state in enumerate(states) if state.grad is None or not state.grad.abs().sum() > 0]
    assert not missing, f"states {missing} of {len(states)} got no gradient"


def test_hidden_state_gradients_match_transformers(checkpoint):
    directory, reference = checkpoint
    ours = Mask2FormerForUniversalSegmentation.from_pretrained(directory / "sub")
    pixel_values = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    grads = []
    for model in (ours, reference):
        out = model(pixel_values, output_hidden_states=True)
        for state in out.transformer_decoder_hidden_states:
            state.retain_grad()
        # a deterministic stand-in for the loss (the real one samples points at random)
        (out.class_queries_logits.square().sum() + out.masks_queries_logits.sigmoid().sum()).backward()
        grads.append([state.grad for state in out.transformer_decoder_hidden_states])
    for got, expected in zip(*grads):
        assert max_abs_diff(got, expected) < 1e-4


def test_transformers_spellings_of_dtype_and_device(checkpoint):
    directory, _ = checkpoint
    model = Mask2FormerForUniversalSegmentation.from_pretrained(directory / "sub", torch_dtype=torch.float16,
                                                                device_map="cpu")
    assert model.class_predictor.weight.dtype == torch.float16
    with pytest.raises(ValueError, match="one device"):
        Mask2FormerForUniversalSegmentation.from_pretrained(directory / "sub", device_map="auto")
