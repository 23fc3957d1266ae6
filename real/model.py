"""Random-weight Llama checkpoints written with transformers' ``save_pretrained`` (no download, seeded)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ModelSize:
    """Shape of a random-weight Llama."""

    num_layers: int = 4
    hidden: int = 256
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate: int = 688
    vocab: int = 1024
    max_context_tokens: int = 4096

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden // self.num_heads

    @property
    def num_params(self) -> int:
        """Parameters of the checkpoint (embeddings and head untied)."""
        layer = (2 * self.hidden * self.hidden + 2 * self.hidden * self.num_kv_heads * self.head_dim
                 + 3 * self.hidden * self.intermediate + 2 * self.hidden)
        return self.num_layers * layer + 2 * self.vocab * self.hidden + self.hidden


def size_of_checkpoint(folder: str | Path) -> ModelSize:
    """The shape of any Hugging Face decoder checkpoint, from its ``config.json`` (for profiles)."""
    path = Path(folder) / "config.json"
    try:
        c = json.loads(path.read_text())
        heads = int(c["num_attention_heads"])
        return ModelSize(num_layers=int(c["num_hidden_layers"]), hidden=int(c["hidden_size"]), num_heads=heads,
                         num_kv_heads=int(c.get("num_key_value_heads", heads)),
                         intermediate=int(c.get("intermediate_size", 4 * int(c["hidden_size"]))),
                         vocab=int(c["vocab_size"]), max_context_tokens=int(c.get("max_position_embeddings", 2048)))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: cannot read the model's shape: {exc!r}") from exc


SIZES = {
    "tiny": ModelSize(),
    "small": ModelSize(num_layers=6, hidden=512, num_heads=8, num_kv_heads=4, intermediate=1536, vocab=4096),
}
"""tiny (3.7 M parameters, mostly embeddings): tests. small (22.7 M): validation, where a CPU step is
mostly compute (about 13 ms of fixed cost against ~2 ms of Python per step; see README)."""


def write_model(folder: str | Path, size: ModelSize, seed: int = 0) -> Path:
    """Write a float32 random-weight Llama into ``folder`` (atomically) unless one of this size is there."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    stamp = folder / "infercept_size.json"
    want = json.dumps({**asdict(size), "seed": seed}, sort_keys=True)
    if stamp.exists() and stamp.read_text() == want:
        return folder
    cfg = LlamaConfig(vocab_size=size.vocab, hidden_size=size.hidden, intermediate_size=size.intermediate,
                      num_hidden_layers=size.num_layers, num_attention_heads=size.num_heads,
                      num_key_value_heads=size.num_kv_heads, max_position_embeddings=size.max_context_tokens,
                      torch_dtype="float32", tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    model.save_pretrained(tmp)
    (tmp / "infercept_size.json").write_text(want)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder
