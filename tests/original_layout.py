"""Test helper: a transformers-layout Mask2Former state dict renamed to the original (detectron2) layout, written
independently of the library by following the official converters in reverse (transformers'
convert_mask2former_original_pytorch_checkpoint_to_pytorch.py for Swin and the decoders, MaskFormer's
convert_maskformer_resnet_to_pytorch.py for detectron2's ResNet), and pickled as detectron2's model zoo files are."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

BACKBONE = "model.pixel_level_module.encoder."
PIXEL_DECODER = "model.pixel_level_module.decoder."
TRANSFORMER = "model.transformer_module."


def _swin(key: str) -> str | None:
    rules = [
        (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
        (r"^embeddings\.norm\.", "patch_embed.norm."),
        (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_before\.", r"layers.\1.blocks.\2.norm1."),
        (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_after\.", r"layers.\1.blocks.\2.norm2."),
        (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.self\.relative_position_bias_table$",
         r"layers.\1.blocks.\2.attn.relative_position_bias_table"),
        (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.output\.dense\.", r"layers.\1.blocks.\2.attn.proj."),
        (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.intermediate\.dense\.", r"layers.\1.blocks.\2.mlp.fc1."),
        (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.output\.dense\.", r"layers.\1.blocks.\2.mlp.fc2."),
        (r"^encoder\.layers\.(\d+)\.downsample\.", r"layers.\1.downsample."),
    ]
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    if m := re.match(r"^hidden_states_norms\.stage(\d+)\.(weight|bias)$", key):
        return f"norm{int(m[1]) - 1}.{m[2]}"
    return None


def _resnet(key: str) -> str | None:
    if key.endswith("num_batches_tracked"):
        return ""  # frozen BatchNorm stores no counter
    key = key.replace(".convolution.weight", ".weight").replace(".normalization.", ".norm.")
    if key.startswith("embedder.embedder."):
        return "stem.conv1." + key[len("embedder.embedder."):]
    m = re.match(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.(shortcut|layer\.(\d+))\.(.*)$", key)
    if m:
        part = "shortcut" if m[3] == "shortcut" else f"conv{int(m[4]) + 1}"
        return f"res{int(m[1]) + 2}.{m[2]}.{part}.{m[5]}"
    return None


def _pixel_decoder(key: str) -> str:
    rules = [
        (r"^(adapter|layer)_(\d+)\.0\.weight$", r"\1_\2.weight"),
        (r"^(adapter|layer)_(\d+)\.1\.", r"\1_\2.norm."),
        (r"^input_projections\.", "input_proj."),
        (r"^level_embed$", "transformer.level_embed"),
        (r"^encoder\.layers\.(\d+)\.self_attn\.", r"transformer.encoder.layers.\1.self_attn."),
        (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"transformer.encoder.layers.\1.norm1."),
        (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"transformer.encoder.layers.\1.norm2."),
        (r"^encoder\.layers\.(\d+)\.fc1\.", r"transformer.encoder.layers.\1.linear1."),
        (r"^encoder\.layers\.(\d+)\.fc2\.", r"transformer.encoder.layers.\1.linear2."),
        (r"^mask_projection\.", "mask_features."),
    ]
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return "sem_seg_head.pixel_decoder." + re.sub(pattern, replacement, key)
    raise KeyError(key)


def _transformer(key: str) -> str:
    rules = [
        (r"^queries_embedder\.", "query_embed."),
        (r"^queries_features\.", "query_feat."),
        (r"^level_embed\.", "level_embed."),
        (r"^input_projections\.", "input_proj."),
        (r"^decoder\.layers\.(\d+)\.self_attn\.out_proj\.",
         r"transformer_self_attention_layers.\1.self_attn.out_proj."),
        (r"^decoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"transformer_self_attention_layers.\1.norm."),
        (r"^decoder\.layers\.(\d+)\.cross_attn\.", r"transformer_cross_attention_layers.\1.multihead_attn."),
        (r"^decoder\.layers\.(\d+)\.cross_attn_layer_norm\.", r"transformer_cross_attention_layers.\1.norm."),
        (r"^decoder\.layers\.(\d+)\.fc1\.", r"transformer_ffn_layers.\1.linear1."),
        (r"^decoder\.layers\.(\d+)\.fc2\.", r"transformer_ffn_layers.\1.linear2."),
        (r"^decoder\.layers\.(\d+)\.final_layer_norm\.", r"transformer_ffn_layers.\1.norm."),
        (r"^decoder\.layernorm\.", "decoder_norm."),
        (r"^decoder\.mask_predictor\.mask_embedder\.(\d+)\.0\.", r"mask_embed.layers.\1."),
    ]
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return "sem_seg_head.predictor." + re.sub(pattern, replacement, key)
    raise KeyError(key)


def to_original_layout(state_dict: dict[str, torch.Tensor], backbone_type: str) -> dict[str, torch.Tensor]:
    """A transformers-layout file state dict (keys ``model.…``, ``class_predictor.…``) in the original layout."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}  # original fused key -> {part: tensor}
    for key, tensor in state_dict.items():
        if key.startswith(BACKBONE):
            rest = key[len(BACKBONE):]
            if rest.startswith("swin.layernorm.") or rest.endswith("relative_position_index"):
                continue  # transformers 5's unused norm; the index is written below as the original stores it
            if m := re.match(r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.self\.(query|key|value)\.(\w+)$",
                             rest):
                fused.setdefault(f"backbone.layers.{m[1]}.blocks.{m[2]}.attn.qkv.{m[4]}", {})[m[3]] = tensor
                continue
            name = _swin(rest) if backbone_type == "swin" else _resnet(rest)
            if name == "":
                continue
            assert name is not None, key
            out["backbone." + name] = tensor
            if backbone_type == "swin" and name.endswith("relative_position_bias_table"):
                window = (int(tensor.shape[0] ** 0.5) + 1) // 2
                out["backbone." + name.replace("bias_table", "index")] = torch.zeros(
                    window * window, window * window, dtype=torch.long)  # stored (49, 49) for window 7
        elif key.startswith(PIXEL_DECODER):
            out[_pixel_decoder(key[len(PIXEL_DECODER):])] = tensor
        elif key.startswith(TRANSFORMER):
            rest = key[len(TRANSFORMER):]
            if m := re.match(r"^decoder\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(\w+)$", rest):
                fused.setdefault(f"sem_seg_head.predictor.transformer_self_attention_layers.{m[1]}.self_attn."
                                 f"in_proj_{m[3]}", {})[m[2]] = tensor
                continue
            out[_transformer(rest)] = tensor
        elif key.startswith("class_predictor."):
            out["sem_seg_head.predictor.class_embed." + key.split(".", 1)[1]] = tensor
        elif key == "criterion.empty_weight":
            out[key] = tensor
        else:
            raise KeyError(key)
    for key, parts in fused.items():
        order = ("query", "key", "value") if "qkv" in key else ("q", "k", "v")
        out[key] = torch.cat([parts[p] for p in order], dim=0)
    return out


def write_detectron2_pickle(state_dict: dict[str, torch.Tensor], path: Path, *, numpy1_names: bool = False) -> Path:
    """Pickle {"model": {name: numpy array}, "__author__": ...} as detectron2's model zoo files are.

    ``numpy1_names``: spell the array reconstructor as numpy 1 did (``numpy.core.multiarray``), as the released files
    do; written with protocol 2, whose GLOBAL opcodes hold the names as plain text lines.
    """
    data = {"model": {k: v.detach().cpu().numpy() for k, v in state_dict.items()}, "__author__": "tests"}
    if numpy1_names:
        raw = pickle.dumps(data, protocol=2)
        assert b"cnumpy._core.multiarray\n_reconstruct\n" in raw
        raw = raw.replace(b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n")
        path.write_bytes(raw)
    else:
        with open(path, "wb") as handle:
            pickle.dump(data, handle)
    return path
