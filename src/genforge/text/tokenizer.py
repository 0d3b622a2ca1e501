"""A word-level tokenizer built from the training captions.

Why word-level and not BPE: captions of a dataset (and of the built-in one) use a small closed
vocabulary, where whole words are the units an encoder trained from scratch learns fastest; the
`tokenizers` library would add huggingface_hub and an HTTP stack to an offline library for that.
Words never seen in training become one unknown token, and the caller is told which words they were.

Text is lower-cased and split into runs of letters/digits and single punctuation marks; each
sequence starts with a begin token (so no sequence is empty) and is padded to the context length.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

import torch

PAD, UNK, BOS = "<pad>", "<unk>", "<bos>"
SPECIALS = (PAD, UNK, BOS)
PAD_ID, UNK_ID, BOS_ID = 0, 1, 2
_WORD = re.compile(r"[^\W_]+|[^\w\s]|_", re.UNICODE)


def split_words(text: str) -> list[str]:
    """'Top left: a RED 7.' -> ['top', 'left', ':', 'a', 'red', '7', '.']"""
    return _WORD.findall(text.lower())


@dataclass
class Encoded:
    """Token ids (N, T) int64 padded with PAD_ID, the mask (N, T) (True for real tokens), the words
    that were not in the vocabulary and the prompts cut to the context length."""

    ids: torch.Tensor
    mask: torch.Tensor
    unknown: list[str]
    truncated: list[str]


class WordTokenizer:
    """Words to ids and back; `vocab` lists the words by id, the special tokens first."""

    def __init__(self, vocab: list[str]):
        if list(vocab[:len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def build(cls, captions, max_size: int) -> WordTokenizer:
        """The max_size - 3 most frequent words of the captions (ties alphabetical), after the specials."""
        counts = Counter(w for text in captions for w in split_words(text))
        words = sorted(counts, key=lambda w: (-counts[w], w))[:max(0, max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + words)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, texts: list[str], context: int) -> Encoded:
        ids = torch.full((len(texts), context), PAD_ID, dtype=torch.long)
        unknown, truncated = [], []
        for row, text in enumerate(texts):
            words = split_words(text)
            tokens = [BOS_ID] + [self.index.get(w, UNK_ID) for w in words]
            unknown += [w for w in words if w not in self.index and w not in unknown]
            if len(tokens) > context:
                truncated.append(text)
                tokens = tokens[:context]
            ids[row, :len(tokens)] = torch.tensor(tokens)
        return Encoded(ids, ids != PAD_ID, unknown, truncated)

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Token ids back to space-separated words (begin and padding tokens dropped)."""
        return [" ".join(self.vocab[int(i)] for i in row if int(i) not in (PAD_ID, BOS_ID)) for row in ids]

    def to_json(self) -> str:
        return json.dumps({"kind": "word", "vocab": self.vocab}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> WordTokenizer:
        data = json.loads(text)
        return cls(data["vocab"])
