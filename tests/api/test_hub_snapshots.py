"""Hub checkpoints as users download them: a whole snapshot of facebook/bart-base,
bart-large-cnn, mbart-large-50-many-to-many-mmt or mbart-large-cc25 (file for file, at tiny size)
uploads as is; only safetensors, JSON and tokenizer files are kept, the other weight formats are
dropped unopened and listed, and the stored model loads as the worker loads it."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from transformers import AutoTokenizer, BartForConditionalGeneration, MBartForConditionalGeneration
from transformers.models.mbart50.tokenization_mbart50 import FAIRSEQ_LANGUAGE_CODES as ML50_CODES

from compression.recipe import TeacherSpec
from compression.teacher import load_teacher
from compression.tokenizer import train_bart_tokenizer, train_sentencepiece
from tests.api.conftest import Headers, tar_bytes, upload_model
from tests.tiny import en_de_texts, sample_texts, tiny_bart_config

# The repositories' file lists (their main branch), as `hf download REPO --local-dir DIR` leaves them.
LAYOUTS = {
    "facebook/bart-base": (
        ".gitattributes", "README.md", "config.json", "flax_model.msgpack", "merges.txt", "model.safetensors",
        "pytorch_model.bin", "rust_model.ot", "tf_model.h5", "tokenizer.json", "vocab.json"),
    "facebook/bart-large-cnn": (
        ".gitattributes", "README.md", "config.json", "flax_model.msgpack", "generation_config.json",
        "generation_config_for_summarization.json", "merges.txt", "model.safetensors", "pytorch_model.bin",
        "rust_model.ot", "tf_model.h5", "tokenizer.json", "vocab.json"),
    "facebook/mbart-large-50-many-to-many-mmt": (
        ".gitattributes", "README.md", "config.json", "generation_config.json", "model.safetensors",
        "pytorch_model.bin", "sentencepiece.bpe.model", "special_tokens_map.json", "tf_model.h5",
        "tokenizer_config.json"),
    "facebook/mbart-large-cc25": (
        ".gitattributes", "README.md", "config.json", "model.safetensors", "pytorch_model.bin",
        "sentencepiece.bpe.model", "tf_model.h5", "tokenizer.json"),
}
# Stand-ins for the formats we must never open: a pickle (it would run on load), HDF5, msgpack, Rust.
OTHER_WEIGHTS = {"pytorch_model.bin": pickle.dumps({"never": "unpickled"}),
                 "tf_model.h5": b"\x89HDF\r\n\x1a\n", "flax_model.msgpack": b"\x81\xa5flax",
                 "rust_model.ot": b"PK\x03\x04tch"}
DOCS = {"README.md": b"# tiny stand-in\n", ".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n"}


def bart_tokenizer_files() -> dict[str, bytes]:
    """vocab.json + merges.txt + tokenizer.json, as the BART repositories have them (no tokenizer_config)."""
    tokenizer = train_bart_tokenizer(sample_texts(200), vocab_size=400)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.backend_tokenizer.model.save(tmp)
        tokenizer.backend_tokenizer.save(str(Path(tmp) / "tokenizer.json"))
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir()}


def mbart50_tokenizer_files() -> dict[str, bytes]:
    """sentencepiece.bpe.model and the ML50 language table in the tokenizer settings."""
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}
    config = {**specials, "tokenizer_class": "MBart50Tokenizer", "language_codes": "ML50", "src_lang": None,
              "tgt_lang": None, "model_max_length": 1024}
    return {"sentencepiece.bpe.model": train_sentencepiece(en_de_texts(200), 400),
            "tokenizer_config.json": json.dumps(config).encode(),
            "special_tokens_map.json": json.dumps(
                {**specials, "additional_special_tokens": ML50_CODES}).encode()}


def cc25_tokenizer_files() -> dict[str, bytes]:
    """sentencepiece.bpe.model and the tokenizer.json transformers writes for it (25 language codes)."""
    model = train_sentencepiece(en_de_texts(200), 400)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sentencepiece.bpe.model").write_bytes(model)
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "MBartTokenizer"}))
        AutoTokenizer.from_pretrained(tmp).save_pretrained(tmp)
        written = (Path(tmp) / "tokenizer.json").read_bytes()
        return {"sentencepiece.bpe.model": model, "tokenizer.json": written}


def vocabulary_size(files: dict[str, bytes], model_type: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        (Path(tmp) / "config.json").write_text(json.dumps({"model_type": model_type}))
        return len(AutoTokenizer.from_pretrained(tmp))


def write_snapshot(repo: str, folder: Path) -> Path:
    """A tiny random model in `repo`'s exact file layout."""
    mbart = "mbart" in repo
    tokenizer = (mbart50_tokenizer_files() if "50" in repo else cc25_tokenizer_files()) if mbart \
        else bart_tokenizer_files()
    config = tiny_bart_config(vocabulary_size(tokenizer, "mbart" if mbart else "bart"), mbart=mbart)
    model = (MBartForConditionalGeneration if mbart else BartForConditionalGeneration)(config)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)  # config.json, generation_config.json, model.safetensors
        saved = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
    saved["generation_config_for_summarization.json"] = saved["generation_config.json"]
    available = {**saved, **tokenizer, **OTHER_WEIGHTS, **DOCS}
    folder.mkdir(parents=True)
    for name in LAYOUTS[repo]:
        (folder / name).write_bytes(available[name])
    return folder


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub")
    return {repo: write_snapshot(repo, root / repo.split("/")[1]) for repo in LAYOUTS}


def never_unpickle(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("something tried to unpickle")


@pytest.mark.parametrize("repo", sorted(LAYOUTS))
def test_a_whole_snapshot_uploads_and_lists_the_files_it_dropped(
        client: TestClient, auth: Headers, snapshots: dict[str, Path], repo: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pickle, "load", never_unpickle)
    monkeypatch.setattr(pickle, "loads", never_unpickle)
    name = repo.split("/")[1]
    model = upload_model(client, auth, tar_bytes(snapshots[repo], arcname=name))
    expected = sorted(f"{name}/{file}" for file in LAYOUTS[repo] if file in {**OTHER_WEIGHTS, **DOCS})
    assert sorted(model["dropped_files"]) == expected


@pytest.mark.parametrize("repo", sorted(LAYOUTS))
def test_the_stored_snapshot_loads_as_the_worker_loads_it(
        client: TestClient, auth: Headers, snapshots: dict[str, Path], repo: str, tmp_path: Path) -> None:
    model = upload_model(client, auth, tar_bytes(snapshots[repo], arcname=repo.split("/")[1]))
    stored = client.get(f"/v1/models/{model['id']}/download", headers=auth)
    with tarfile.open(fileobj=io.BytesIO(stored.content)) as tf:
        names = {Path(n).name for n in tf.getnames()}
        tf.extractall(tmp_path, filter="data")
    assert not names & (set(OTHER_WEIGHTS) | set(DOCS))
    root = next(p.parent for p in tmp_path.rglob("config.json"))
    loaded, tokenizer = load_teacher(TeacherSpec(path=str(root)))
    assert loaded.config.vocab_size >= len(tokenizer)
    if "mbart" in repo:  # the language table came along: en_XX and de_DE are real tokens
        tokenizer.src_lang = "en_XX"
        ids = tokenizer("A small tool")["input_ids"]
        assert tokenizer.convert_tokens_to_ids("en_XX") in ids
        assert tokenizer.convert_tokens_to_ids("de_DE") != tokenizer.unk_token_id


def test_a_snapshot_without_safetensors_is_refused_with_how_to_convert(
        client: TestClient, auth: Headers, snapshots: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "mbart-large-cc25"
    folder.mkdir()
    for file in snapshots["facebook/mbart-large-cc25"].iterdir():
        if file.name != "model.safetensors":
            (folder / file.name).write_bytes(file.read_bytes())
    response = client.post("/v1/models", headers=auth,
                           files={"file": ("cc25.tar.gz", tar_bytes(folder, arcname=folder.name))})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "file" and "model.safetensors is missing" in error["message"]
    assert "hf download" in error["message"] and "save_pretrained" in error["message"]
