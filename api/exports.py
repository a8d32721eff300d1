"""Downloads in another format: a stored model as a CTranslate2 folder (one .tar) that
`ctranslate2.Translator` loads as is, with the tokenizer files.

The folder is the one the inference service converts and caches (serving.engines.converted);
its .tar is written once per artifact checksum and converter version into the cache, never
into the artifact, and its checksum is kept beside it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import ctranslate2

from compression.artifact import QUANTIZATION_FILE
from compression.ct2 import CONVERTER_VERSION, Quantization
from serving.engines import converted
from serving.loading import unpack_artifact
from store.blobs import BlobStore, LocalBlobStore, sha256_file, write_tar
from store.settings import Settings


@dataclass(frozen=True)
class Export:
    blobs: LocalBlobStore
    key: str
    sha256: str


def ctranslate2_export(settings: Settings, blobs: BlobStore, *, artifact_key: str, sha256: str) -> Export:
    """The CTranslate2 .tar of the stored artifact: int8 with its exact codes for a compressed
    model, float32 for a plain teacher."""
    exports = LocalBlobStore(settings.cache_dir / "exports")
    key = f"{sha256}-ctranslate2-v{CONVERTER_VERSION}-{ctranslate2.__version__}.tar"
    checksum = exports.path_of(key).with_suffix(".sha256")
    if exports.exists(key) and checksum.is_file():
        return Export(exports, key, checksum.read_text(encoding="utf-8"))
    folder = unpack_artifact(blobs.path_of(artifact_key), sha256, settings.cache_dir / "serving")
    quantization: Quantization = "int8" if (folder / QUANTIZATION_FILE).is_file() else "float32"
    model_dir = converted(folder, sha256, settings.cache_dir / "ctranslate2", quantization)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.cache_dir, prefix=".export-") as work:
        tar = Path(work) / "model.tar"
        write_tar(model_dir, tar)
        digest = sha256_file(tar)
        exports.put_file(key, tar)
    checksum.write_text(digest, encoding="utf-8")
    return Export(exports, key, digest)
