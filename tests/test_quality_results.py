"""benchmarks/quality/results.json (the current chain), ar-teacher-score/results.json (the students scored by the AR
teacher), two-scores/results.json and long-tuning/results.json (the students scored by both teachers),
warm-ar-teacher/results.json and warm-ar-teacher/long-tuning/results.json (the AR teacher started from the
bidirectional one, and its students), warm-ar-more/results.json and warm-ar-more/long-tuning/results.json (that
teacher trained longer, and its students), warm-ar-more2/results.json and long-clips/results.json (3000 steps more
again, then 8 s clips, and their students), teacher-probes/results.json (the bidirectional teacher trained longer)
and checkpoints/causal-vae-chain/results.json (the chain before issue 16, kept with its models and VAE)
are reproducible: re-generate a few clips from the committed checkpoints with the suite's own code (same grid,
seed, CFG and decode), re-score them with the judge, and compare every dimension and the total with the stored
per-clip scores.

Skips (with the reason) while results.json or the checkpoints it names are not committed. To check another run:
SALT_QUALITY_RESULTS=/path/to/results.json (its config names the checkpoints, VAE and text encoder used;
relative paths are taken from the repository root).
"""
import math
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUALITY = os.path.join(ROOT, "benchmarks", "quality")
RESULTS_FILES = ([os.environ["SALT_QUALITY_RESULTS"]] if os.environ.get("SALT_QUALITY_RESULTS") else
                 [os.path.join(QUALITY, "results.json"),
                  os.path.join(QUALITY, "ar-teacher-score", "results.json"),
                  os.path.join(QUALITY, "two-scores", "results.json"),
                  os.path.join(QUALITY, "long-tuning", "results.json"),
                  os.path.join(QUALITY, "warm-ar-teacher", "results.json"),
                  os.path.join(QUALITY, "warm-ar-teacher", "long-tuning", "results.json"),
                  os.path.join(QUALITY, "warm-ar-more", "results.json"),
                  os.path.join(QUALITY, "warm-ar-more", "long-tuning", "results.json"),
                  os.path.join(QUALITY, "warm-ar-more2", "results.json"),
                  os.path.join(QUALITY, "long-clips", "results.json"),
                  os.path.join(QUALITY, "teacher-probes", "results.json"),
                  os.path.join(QUALITY, "checkpoints", "causal-vae-chain", "results.json")])
# CPU fp32 with one thread is deterministic: re-runs reproduce the stored scores exactly (measured: 0 difference).
TOLERANCE = 1e-3
CASES = [("sc-dmd-8", 4, 0), ("dmd-4", 1, 1), ("salt-ar", 2, 0), ("salt-ar", 2, 1), ("salt-ar-tf", 4, 0),
         ("dmd-4-tf", 2, 1), ("salt-ar-2s", 4, 1), ("salt-ar-2s-long", 4, 2),
         ("salt-ar-warm-tf", 2, 1), ("salt-ar-warm-2s", 4, 0), ("salt-ar-warm-tf-long", 4, 1),
         ("teacher-long", 50, 3), ("salt-ar-warm-more-tf", 4, 2), ("dmd-4-warm-more-tf", 4, 1),
         ("salt-ar-warm-more-tf-long", 2, 3), ("salt-ar-warm-more2-tf", 4, 0), ("teacher-ar-long-clips", 50, 1),
         ("salt-ar-long-clips", 8, 2)]


def _path(p: str) -> str:
    return p if os.path.isabs(p) else os.path.join(ROOT, p)


def _file_cases() -> list:
    """(results file, model, NFE, prompt) for each case whose model that file evaluated (every case while the file is
    missing, so that the skip says so): each file re-scores its own models only."""
    import json

    out = []
    for path in RESULTS_FILES:
        models = None
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                models = {c["model"] for c in json.load(fh).get("nfe", {}).get("clips", [])}
        for model, nfe, prompt in CASES:
            if models is None or model in models:
                out.append(pytest.param(path, model, nfe, prompt,
                                        id=f"{os.path.relpath(path, QUALITY)}-{model}-{nfe}-{prompt}"))
    return out


@pytest.fixture(scope="module", params=RESULTS_FILES, ids=lambda p: os.path.relpath(p, QUALITY))
def stored(request):
    import json

    path = request.param
    if not os.path.isfile(path):
        pytest.skip(f"{path} is not there yet (committed with the final models; run benchmarks/quality/evaluate.py)")
    with open(path, encoding="utf-8") as fh:
        results = json.load(fh)
    results["_file"] = path
    if "nfe" not in results:
        pytest.skip(f"{path} has no NFE section (run evaluate.py with --sections including nfe)")
    cfg = results["config"]
    for key in ("vae", "text_encoder"):
        if not os.path.isfile(_path(cfg[key])):
            pytest.skip(f"{key} {cfg[key]} named by {path} is missing")
    return results


@pytest.fixture(scope="module")
def bench(stored):
    sys.path.insert(0, QUALITY)
    from generation import Bench, read_prompts

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = stored["config"]
    prompts = cfg.get("prompt_list") or read_prompts(_path(cfg["prompt_file"]), cfg["prompts"])
    yield Bench(_path(cfg["checkpoints"]), _path(cfg["vae"]), _path(cfg["text_encoder"]), prompts)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("stored,model,nfe,prompt", _file_cases(), indirect=["stored"])
def test_stored_clip_scores_are_reproduced(stored, bench, model, nfe, prompt):
    row = [c for c in stored["nfe"]["clips"] if (c["model"], c["nfe"], c["prompt"]) == (model, nfe, prompt)]
    if not row:
        pytest.skip(f"{stored['_file']} holds no clip for {model} at NFE {nfe}, prompt {prompt}")
    if not os.path.isfile(os.path.join(_path(stored["config"]["checkpoints"]), f"{model}.safetensors")):
        pytest.skip(f"checkpoint {model}.safetensors is not in {stored['config']['checkpoints']}")
    torch.set_num_threads(1)
    scores = bench.clip(model, nfe, prompt).scores
    expected = row[0]
    keys = [k for k in expected if k not in ("model", "nfe", "prompt")]
    assert "total" in keys and len(keys) >= 2
    for k in keys:
        want, got = expected[k], scores[k]
        if want is None or (isinstance(want, float) and math.isnan(want)):
            assert math.isnan(got), (k, want, got)
        else:
            assert abs(got - want) <= TOLERANCE, f"{model} NFE {nfe} prompt {prompt} {k}: stored {want}, now {got}"


def test_nfe_rows_are_the_mean_of_their_clips(stored):
    """The table in RESULTS.md is computed from the per-clip scores it stores (no number typed in)."""
    for row in stored["nfe"]["rows"]:
        totals = [c["total"] for c in stored["nfe"]["clips"] if (c["model"], c["nfe"]) == (row["model"], row["nfe"])]
        assert len(totals) == row["prompts"]
        finite = [t for t in totals if t == t]
        assert row["total"] == pytest.approx(sum(finite) / len(finite), abs=1e-12)


def test_stored_reference_scores_are_reproduced(stored, bench):
    """Section 0: the first prompt's real clip and its VAE reconstruction re-score to the stored per-clip totals."""
    if "reference" not in stored:
        pytest.skip(f"{stored['_file']} has no reference section (run evaluate.py with --sections including reference)")
    import reference

    torch.set_num_threads(1)
    rows = {r["reference"]: r for r in stored["reference"]["rows"]}
    real = reference.real_clip(bench.prompts[0], seed=0)
    from training.judge import score_clip

    got_real = score_clip(real, bench.prompts[0], fps=reference.FPS)["total"]
    got_recon = score_clip(reference.reconstruct(bench, real), bench.prompts[0], fps=reference.FPS)["total"]
    assert abs(got_real - rows["real clips"]["per_clip_total"][0]) <= TOLERANCE
    assert abs(got_recon - rows["VAE reconstructions"]["per_clip_total"][0]) <= TOLERANCE
    assert got_recon < got_real  # a lossy VAE never improves on the world's own clip
