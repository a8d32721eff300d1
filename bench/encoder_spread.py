"""How alive a teacher's encoder is along its training: the spread of its outputs over tokens.

A from-scratch encoder can collapse: every token's output vector becomes the same, the decoder
learns the targets' language alone, and the matched-vs-shuffled input gap stays near 0
(quality-v4 section 1). The spread is the standard deviation over the non-pad tokens of the
encoder's last hidden state, averaged over features, on the first validation documents.

    python -m bench.encoder_spread ~/.cache/dqbart/teachers/debian-d256
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel

from compression.data import read_records

FULL_VALIDATION = Path(__file__).resolve().parents[2] / "shared/data/debian-desc/validation.jsonl.gz"


@torch.no_grad()
def spread(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> float:
    """Std over real tokens of the encoder output, averaged over features."""
    model.eval()
    hidden = model.get_encoder()(**batch).last_hidden_state
    tokens = hidden[batch["attention_mask"].bool()]  # [real tokens, d_model]
    return float(tokens.std(dim=0).mean())


def checkpoints(folder: Path) -> list[Path]:
    """Every stage's checkpoints in step order: the denoising stage first, then the task."""
    return sorted(folder.glob("denoised.checkpoints/*")) + sorted(folder.glob("teacher.checkpoints/*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a bench.teacher output folder")
    parser.add_argument("--validation", type=Path, default=FULL_VALIDATION)
    parser.add_argument("--documents", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    init = args.folder / "init"
    tokenizer = AutoTokenizer.from_pretrained(str(init))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(init))
    documents = [r.source for r in read_records(args.validation, "document", "summary")[: args.documents]]
    batch = dict(tokenizer(documents, max_length=128, truncation=True, padding=True, return_tensors="pt"))
    rows = [{"checkpoint": "init", "spread": spread(model, batch)}]
    for path in checkpoints(args.folder):
        model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)
        rows.append({"checkpoint": path.name, "stage": path.parent.name, "spread": spread(model, batch)})
    print("| stage | checkpoint | encoder spread |\n|---|---|---|")
    for row in rows:
        print(f"| {row.get('stage', 'init')} | {row['checkpoint']} | {row['spread']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
