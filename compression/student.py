"""Build the student: the teacher's architecture with fewer layers, each copied from a teacher layer."""

from __future__ import annotations

import copy
import re

import torch
from transformers import PreTrainedModel

from compression.layer_map import LayerMap, resolve_layer_plan
from compression.recipe import StudentSpec

_LAYER_KEY = re.compile(r"^(.*\b(encoder|decoder)\.layers\.)(\d+)(\..+)$")


def teacher_key(student_key: str, layer_map: LayerMap) -> str:
    """The teacher state_dict key a student key is copied from (layer keys go through the map)."""
    match = _LAYER_KEY.match(student_key)
    if match is None:
        return student_key
    prefix, stack, index, rest = match.groups()
    mapped = getattr(layer_map, stack)[int(index)]
    return f"{prefix}{mapped}{rest}"


def build_student(teacher: PreTrainedModel, spec: StudentSpec) -> tuple[PreTrainedModel, LayerMap]:
    """Same class and config as the teacher with the planned depths, initialised from the teacher.

    Layer i of each stack is the teacher layer `layer_map.<stack>[i]`; everything else
    (embeddings, positions, layernorm_embedding, final layer norms, final_logits_bias) is copied
    as is. The student comes back in train mode, on the teacher's device and dtype.
    """
    config = teacher.config
    spec.check_against(config.encoder_layers, config.decoder_layers)
    layer_map = LayerMap(
        encoder=resolve_layer_plan(spec.encoder_layers, config.encoder_layers),
        decoder=resolve_layer_plan(spec.decoder_layers, config.decoder_layers),
    )
    student_config = copy.deepcopy(config)
    student_config.encoder_layers = len(layer_map.encoder)
    student_config.decoder_layers = len(layer_map.decoder)
    student_config._attn_implementation = "eager"
    student = type(teacher)(student_config).to(device=teacher.device, dtype=teacher.dtype)  # type: ignore[call-arg]  # transformers types its wrapped `to` without self
    source = teacher.state_dict()
    with torch.no_grad():
        student.load_state_dict({key: source[teacher_key(key, layer_map)] for key in student.state_dict()})
    student.generation_config = copy.deepcopy(teacher.generation_config)
    return student.train(), layer_map
