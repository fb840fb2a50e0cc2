"""The quality suite's command-line probes (benchmarks/quality/cache_sensitivity.py, judge_models.py,
contact_sheet.py) on the committed checkpoints: they measure what they say and refuse what they cannot measure.
(conftest runs every test on one thread, as the probes themselves default to.)"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUALITY = os.path.join(ROOT, "benchmarks", "quality")
CHECKPOINTS = os.path.join(QUALITY, "checkpoints", "causal-vae-chain")
sys.path.insert(0, QUALITY)


def _checkpoint(name: str) -> str:
    path = os.path.join(CHECKPOINTS, f"{name}.safetensors")
    if not os.path.isfile(path):
        pytest.skip(f"{path} is not committed")
    return path


def test_cache_probe_is_zero_for_the_same_first_chunk_and_positive_for_another():
    import cache_sensitivity
    from generation import DEFAULT_TEXT_ENCODER
    from salt_core.checkpoints import load_dit
    from salt_core.text import load_text_encoder

    model, info = load_dit(_checkpoint("ar-dmd"))
    model.eval()
    ctx = load_text_encoder(DEFAULT_TEXT_ENCODER).encode(["a red circle moves to the right on a black background"])[0]
    assert cache_sensitivity.probe(model, info, ctx, seed=0, steps=2, other_seed=0) == (0.0, 0.0)
    first, second = cache_sensitivity.probe(model, info, ctx, seed=0, steps=2)
    assert first > 0.05 and second > 0.05  # another first chunk changes it, and the change reaches chunk 2


def test_cache_probe_refuses_a_bidirectional_model(capsys):
    import cache_sensitivity

    with pytest.raises(SystemExit):
        cache_sensitivity.main([_checkpoint("dmd-4"), "--prompts", "1"])
    assert "not a causal student" in capsys.readouterr().err


def test_judge_models_labels_each_cfg_scale(capsys):
    import judge_models

    assert judge_models.main([_checkpoint("teacher"), "--nfe", "1", "--prompts", "1", "--guidance", "1", "3"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "total" in ln]
    assert len(lines) == 2
    assert "NFE 1:" in lines[0] and "NFE 1 CFG 3:" in lines[1]


def test_judge_models_pairs_against_a_results_file_and_refuses_one_that_judged_other_prompts(capsys, tmp_path):
    """Re-judging a committed model against its own clips in the committed results file pairs to exactly zero;
    a file whose prompts differ is refused by name before any clip is judged."""
    import json

    import judge_models

    results = os.path.join(QUALITY, "results.json")
    with open(results) as f:
        data = json.load(f)
    ckpt = os.path.join(ROOT, data["config"]["checkpoints"], "dmd-4.safetensors")
    if not os.path.isfile(ckpt):
        pytest.skip(f"{ckpt} is not committed")
    assert judge_models.main([ckpt, "--nfe", "1", "--prompts", "2", "--against", results, "dmd-4", "1"]) == 0
    paired = [ln for ln in capsys.readouterr().out.splitlines() if "paired vs reference" in ln]
    assert len(paired) == 1
    diffs = dict(part.split(" ")[:2] for part in paired[0].split(": ", 1)[1].split(", "))  # "colour +0.001 ± 0.002"
    assert set(diffs) == set(judge_models.DIMENSIONS)
    assert all(abs(float(d)) < 1e-3 for d in diffs.values()), diffs  # the same clips, re-judged (float round-off)

    data["config"]["prompt_list"][0] = "a different prompt"
    other = tmp_path / "results.json"
    other.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="prompt_list"):
        judge_models.main([ckpt, "--nfe", "4", "--prompts", "1", "--against", str(other), "dmd-4", "4"])
    with pytest.raises(SystemExit, match="no clip of model 'dmd-4' at NFE 3"):
        judge_models.main([ckpt, "--nfe", "4", "--prompts", "1", "--against", results, "dmd-4", "3"])


def test_contact_sheet_tiles_the_judged_frames_of_each_checkpoint(tmp_path):
    """Each tile of the sheet is the clip's frame, upscaled by nearest: checked pixel for pixel against the clip
    judge_models would judge (same prompt, seed and grid)."""
    import numpy as np
    from PIL import Image

    import contact_sheet
    from generation import DEFAULT_PROMPTS, DEFAULT_TEXT_ENCODER, DEFAULT_VAE, Bench, read_prompts, to_uint8
    from salt_core.checkpoints import load_dit

    ckpt = _checkpoint("dmd-4")
    out = tmp_path / "sheet.png"
    assert contact_sheet.main([ckpt, ckpt, "--nfe", "1", "--prompts", "2", "--frames", "3", "--scale", "2",
                               "--out", str(out)]) == 0
    image = np.asarray(Image.open(out))
    prompts = read_prompts(DEFAULT_PROMPTS, 2)
    model, info = load_dit(ckpt)
    video = to_uint8(Bench(contact_sheet.HERE, DEFAULT_VAE, DEFAULT_TEXT_ENCODER, prompts)
                     .judged(model.eval(), info, 1, 1, guidance=1.0)[1]).numpy()  # prompt 1, [T, H, W, 3]
    t, h, w, _ = video.shape
    frames = contact_sheet.pick_frames(t, 3)
    assert frames == [0, round((t - 1) / 2), t - 1]
    block = 3 * 2 * w + contact_sheet.GAP
    assert image.shape == (2 * (2 * h + contact_sheet.LABEL_HEIGHT), 2 * block, 3)
    top = (2 * h + contact_sheet.LABEL_HEIGHT) + contact_sheet.LABEL_HEIGHT  # row 1's tiles
    for c in range(2):
        tile = image[top:top + 2 * h, c * block + 2 * (2 * w):c * block + 3 * (2 * w)]  # frame 3 of 3
        assert np.array_equal(tile[::2, ::2], video[t - 1]) and np.array_equal(tile[1::2, 1::2], video[t - 1])
    assert not os.path.exists(str(out) + ".tmp.png")
    with pytest.raises(SystemExit, match="expected a .png"):
        contact_sheet.main([ckpt, "--out", str(tmp_path / "sheet.jpg")])
