"""The local preset's tokenizer: byte-level BPE trained here on the stdlib training files.

The built entry holds the tokenizer (as its JSON string) and the token streams of the
training and the held-out files, so a cached run tokenizes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from jaxtyping import Int
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import Tensor

from replication.cache import ArtifactCache
from replication.locality.corpus import fingerprint, read_texts, split_stdlib, token_stream

END_OF_TEXT = "<|endoftext|>"


@dataclass(frozen=True)
class BPEConfig:
    """Args:
    vocab_size: BPE vocabulary size, including the end-of-text token.
    heldout_percent: share of stdlib files held out from training (by path hash).
    """

    vocab_size: int = 2048
    heldout_percent: int = 10


@dataclass
class StdlibTokens:
    """The tokenizer and the stdlib token streams (documents separated by end-of-text)."""

    tokenizer: Tokenizer
    train: Int[Tensor, " n_train"]
    heldout: Int[Tensor, " n_heldout"]
    key: str  # the cache entry's key: identifies tokenizer, streams and the code that built them

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids


def train_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def stdlib_tokens(cache: ArtifactCache, cfg: BPEConfig) -> StdlibTokens:
    """Train (or load) the tokenizer and tokenize the stdlib train and held-out files."""
    train_files, heldout_files = split_stdlib(cfg.heldout_percent)
    config = {**asdict(cfg), "train_files": fingerprint(train_files),
              "heldout_files": fingerprint(heldout_files)}

    def build():
        train_texts = read_texts(train_files)
        tokenizer = train_bpe(train_texts, cfg.vocab_size)
        eot = tokenizer.token_to_id(END_OF_TEXT)

        def stream(texts: list[str]) -> Tensor:
            docs = [e.ids for e in tokenizer.encode_batch(texts)]
            return token_stream(docs, eot).to(torch.int32)

        tensors = {"train": stream(train_texts), "heldout": stream(read_texts(heldout_files))}
        meta = {"tokenizer": tokenizer.to_str(), "n_train_files": len(train_files),
                "n_heldout_files": len(heldout_files)}
        return tensors, meta

    tensors, meta = cache.get_or_build("locality-bpe", config, build)
    return StdlibTokens(Tokenizer.from_str(meta["tokenizer"]), tensors["train"].long(),
                        tensors["heldout"].long(), ArtifactCache.key(config, build))
