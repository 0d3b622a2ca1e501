"""The image-text dual encoder and the agreement numbers (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genforge.errors import GenforgeError
from genforge.metrics.text_agreement import (
    attribute_hits,
    embed,
    info_nce,
    load_text_evaluator,
    r_precision,
    train_text_evaluator,
)

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255)}


def square(colour: str, side: str, jitter: int) -> np.ndarray:
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    left = (1 if side == "left" else 9) + jitter % 2
    image[4 + jitter % 3:10 + jitter % 3, left:left + 5] = COLOURS[colour]
    return image


def write_squares(root, per_combo: int = 6):
    root.mkdir(parents=True)
    rows = []
    for k in range(per_combo):
        for colour in COLOURS:
            for side in ("left", "right"):
                name = f"{colour}-{side}-{k}.png"
                Image.fromarray(square(colour, side, k)).save(root / name)
                rows.append({"file_name": name, "text": [f"a {colour} square on the {side}", f"{side}: {colour}"]})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return root


def test_info_nce_is_low_for_matching_pairs_and_log_n_for_uninformative_ones():
    e = torch.eye(4)
    assert float(info_nce(e, e, torch.tensor(np.log(100.0)))) < 1e-3
    same = torch.nn.functional.normalize(torch.ones(4, 4), dim=1)
    assert float(info_nce(same, same, torch.tensor(0.0))) == pytest.approx(np.log(4), abs=1e-6)


def test_r_precision_counts_a_hit_only_when_the_true_caption_beats_all_99_others():
    images = torch.eye(2, 3)
    true = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])  # image 0 matches, image 1 does not
    pool = torch.cat([torch.tensor([[0.0, 0.9, 0]]).repeat(200, 1), true])
    owners = torch.cat([torch.arange(200) % 2, torch.tensor([0, 1])])
    assert r_precision(images, true, pool, owners + 5, torch.tensor([0, 1])) == 0.5
    with pytest.raises(GenforgeError, match="at least 99 other images"):
        r_precision(images, true, pool[:50], torch.arange(50), torch.tensor([0, 1]))


def test_the_dual_encoder_ranks_matching_pairs_above_random_ones(tmp_path):
    torch.manual_seed(0)
    data = write_squares(tmp_path / "squares")
    evaluator = train_text_evaluator(f"folder:{data}", out=tmp_path / "te.pt", epochs=25, batch_size=16, lr=3e-3,
                                     device="cpu", log=None)
    loaded = load_text_evaluator(tmp_path / "te.pt")
    assert loaded.sha256 == evaluator.sha256 and loaded.network.text_tower.tokenizer.vocab[3:]
    combos = [(c, s) for c in COLOURS for s in ("left", "right")]
    images = torch.from_numpy(np.stack([square(c, s, 5) for c, s in combos])).permute(0, 3, 1, 2)
    similarity = embed(loaded.network, images=images) @ embed(loaded.network, texts=[
        f"a {c} square on the {s}" for c, s in combos]).T
    ranks = (similarity > similarity.diag()[:, None]).sum(1)  # other captions scoring above the true one
    assert ranks.float().mean() <= 0.5 and (ranks == 0).float().mean() >= 0.75, similarity
    # Untrained, the same numbers are chance.
    assert torch.equal(embed(evaluator.network, images=images), embed(loaded.network, images=images))


def test_attribute_hits_read_the_pixels_against_what_was_asked():
    from genforge.data.make_captions import BACKGROUNDS
    from genforge.data.make_captions import COLOURS as PALETTE

    image = np.zeros((48, 48, 3), dtype=np.uint8)
    image[:] = BACKGROUNDS["gray"]
    image[2:14, 3:12] = PALETTE["red"]  # a small red blob (12 px high), top left
    wanted = {"count": 1, "digits": [1], "colours": ["red"], "sizes": ["small"], "positions": ["top left"],
              "background": "gray"}
    other = {**wanted, "colours": ["blue"], "positions": ["center"], "background": "black"}
    x = torch.from_numpy(image).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    hits = attribute_hits(x, [wanted, other])
    assert hits["colour"] == [True, False] and hits["position"] == [True, False] and hits["size"] == [True, True]
    assert hits["background"] == [True, False] and "digit" not in hits
