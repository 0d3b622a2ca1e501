"""The word tokenizer and the transformer text encoder (issue 15)."""

from __future__ import annotations

import torch

from genforge.text.encoder import TextEncoder
from genforge.text.tokenizer import BOS_ID, PAD_ID, UNK_ID, WordTokenizer, split_words


def test_split_words_lowercases_and_splits_punctuation():
    assert split_words("Top left: a RED 7.") == ["top", "left", ":", "a", "red", "7", "."]


def test_tokenizer_round_trip_unknown_words_and_truncation():
    tok = WordTokenizer.build(["a red 7", "a blue 3, big", "a red 3"], max_size=100)
    assert tok.vocab[:3] == ["<pad>", "<unk>", "<bos>"] and tok.vocab[3] == "a"  # most frequent first
    enc = tok.encode(["a big red 3", "a purple 7 , big"], context=8)
    assert enc.ids[:, 0].tolist() == [BOS_ID, BOS_ID] and enc.unknown == ["purple"] and not enc.truncated
    assert tok.decode(enc.ids) == ["a big red 3", "a <unk> 7 , big"]
    assert enc.mask.sum(1).tolist() == [5, 6] and (enc.ids[~enc.mask] == PAD_ID).all()
    cut = tok.encode(["a red 3 a red 3 a red 3"], context=4)
    assert cut.truncated == ["a red 3 a red 3 a red 3"] and cut.ids.shape == (1, 4) and cut.mask.all()
    assert WordTokenizer.from_json(tok.to_json()).vocab == tok.vocab
    small = WordTokenizer.build(["a a a b b c"], max_size=5)  # the 2 most frequent words fit
    assert small.vocab == ["<pad>", "<unk>", "<bos>", "a", "b"] and small.encode(["c"], 3).ids[0, 1] == UNK_ID


def encoder(seed: int = 0) -> TextEncoder:
    torch.manual_seed(seed)
    enc = TextEncoder(vocab_size=50, context=12, width=16, layers=2, heads=2).eval()
    enc.fit(["a red 7", "a blue 3", "a big green 5 on the left"])
    return enc


def test_encoder_output_depends_on_the_text_and_not_on_the_padding():
    enc = encoder()
    with torch.no_grad():
        emb, mask = enc.encode(["a red 7", "a blue 7"])
        assert emb.shape == (2, 12, 16) and mask.sum(1).tolist() == [4, 4]
        assert not torch.allclose(emb[0], emb[1])  # other words, other embeddings
        short = enc.tokenize(["a red 7"])
        padded = short.ids.clone()
        # Padding of any content (here: real word ids under a False mask) changes nothing real.
        padded[0, 4:] = 5
        again = enc(padded, short.mask)
        assert torch.allclose(again[0, :4], emb[0, :4], atol=1e-6)
        assert (again[0, 4:] == 0).all() and (emb[0, 4:] == 0).all()
        # A shorter context (fewer pad positions) gives the same embeddings for the real tokens.
        assert torch.allclose(enc(short.ids[:, :6], short.mask[:, :6])[0, :4], emb[0, :4], atol=1e-6)


def test_encoder_carries_its_tokenizer_in_its_state_dict():
    enc = encoder()
    state = enc.state_dict()
    fresh = TextEncoder(vocab_size=50, context=12, width=16, layers=2, heads=2)
    assert fresh.tokenizer.vocab != enc.tokenizer.vocab
    fresh.load_state_dict(state)
    assert fresh.tokenizer.vocab == enc.tokenizer.vocab
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # the tokenizer is a uint8 tensor: safe to load
    fresh.load_state_dict(loaded)
    assert fresh.tokenizer.vocab == enc.tokenizer.vocab


def test_unknown_words_and_cut_prompts_are_named_in_a_warning(capsys):
    enc = encoder()
    enc.tokenize(["a zonk 7 " + "red " * 20], warn=True)
    err = capsys.readouterr().err
    assert "unknown to this model's tokenizer, read as <unk>: zonk" in err
    assert "longer than the encoder's context of 12 tokens were cut" in err
