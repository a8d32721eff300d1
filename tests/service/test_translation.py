"""Translation through the real API and worker: an mBART teacher with our en-de tokenizer,
compressed by a job, downloaded, then /translate with the target language forced."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import Service, post_file
from tests.tiny import SAMPLE_DIR, make_tiny_translation_teacher

pytestmark = pytest.mark.slow
JOB_TIMEOUT_S = 240.0
SOURCES = ["This package contains the data files.", "A small tool to compress files"]


def en_de_rows(split: str, count: int) -> bytes:
    with gzip.open(SAMPLE_DIR / f"en-de-{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        return "".join(line for _, line in zip(range(count), f, strict=False)).encode()


@pytest.fixture(scope="module")
def finished_job(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    teacher = make_tiny_translation_teacher(tmp_path_factory.mktemp("mbart"))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tf:
        tf.add(teacher, arcname="tiny-mbart")
    model = post_file(service.owner, "/v1/models", "tiny-mbart.tar.gz", archive.getvalue())
    train = post_file(service.owner, "/v1/datasets", "train.jsonl", en_de_rows("train", 48))
    validation = post_file(service.owner, "/v1/datasets", "validation.jsonl", en_de_rows("validation", 8))
    recipe = {
        "task": "translation", "src_lang": "en_XX", "tgt_lang": "de_DE",
        "teacher": {"model": model},
        "dataset": {"dataset": train, "validation": validation, "source_field": "source",
                    "target_field": "target", "max_validation_samples": 4},
        "student": {"encoder_layers": 1, "decoder_layers": 1},
        "quantization": {"weight_bits": 8, "embedding_bits": 8, "activation_bits": 8},
        "training": {"max_steps": 4, "batch_size": 4, "checkpoint_every": 2, "log_every": 1,
                     "max_source_length": 64, "max_target_length": 32, "lr": 1e-3},
        "evaluation": {"num_beams": 1, "max_length": 16, "batch_size": 4},
    }
    response = service.owner.post("/v1/jobs", json=recipe)
    assert response.status_code == 201, response.text
    return service.wait_for_job(response.json()["id"], lambda job: False, timeout=JOB_TIMEOUT_S)


def test_translation_job_succeeds_with_bleu_and_chrf(service: Service, finished_job: dict[str, Any]) -> None:
    assert finished_job["status"] == "succeeded", finished_job["error"]
    assert {"bleu", "chrf"} <= {name.removeprefix("eval/") for name in finished_job["metrics"]}
    model = service.owner.get(f"/v1/models/{finished_job['result_model']}").json()
    assert (model["task"], model["architecture"]) == ("translation", "MBartForConditionalGeneration")


def test_artifact_keeps_the_language_codes(service: Service, finished_job: dict[str, Any],
                                           tmp_path: Path) -> None:
    response = service.owner.get(f"/v1/models/{finished_job['result_model']}/download")
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tf:
        tf.extractall(tmp_path, filter="data")
    import compression  # torch and transformers load here, not at collection

    _, tokenizer = compression.load(tmp_path)
    encoded = tokenizer(SOURCES[0], text_target="Dieses Paket")
    firsts = [encoded["input_ids"][0], encoded["labels"][0]]
    assert tokenizer.convert_ids_to_tokens(firsts) == ["en_XX", "de_DE"]


def test_translate_answers_in_the_hugging_face_schema_with_german_forced(
        service: Service, finished_job: dict[str, Any]) -> None:
    model_id = finished_job["result_model"]
    response = service.owner.post(f"/v1/models/{model_id}/translate",
                                  json={"inputs": SOURCES, "parameters": {"max_new_tokens": 6}})
    assert response.status_code == 200, response.text
    translations = response.json()
    assert len(translations) == 2
    assert all(list(item) == ["translation_text"] and isinstance(item["translation_text"], str)
               for item in translations)
    assert service.owner.get(f"/v1/models/{model_id}/info").json()["target_prefix"] == "de_DE"
