"""RESULTS.md and the PNG figures, from the results dict that evaluate.py also writes to results.json."""
from __future__ import annotations

import os

from generation import AR_TEACHERS, CFG_SCALE, FPS, LATENT, SHIFT, TEACHER_STEPS, TEACHERS
from plots import PALETTE, Series, line_chart
from training.judge import DIMENSIONS

FIGURES = {"nfe": "nfe.png", "semigroup": "semigroup.png", "long": "long_rollouts.png"}


def f(v, digits: int = 3) -> str:
    if v is None or v != v:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.{digits}f}"


def pm(v, err, digits: int = 3) -> str:
    return f(v, digits) if err is None or err != err else f"{f(v, digits)} ± {f(err, digits)}"


# ---- figures ---------------------------------------------------------------------------------------------
def plot_nfe(results: dict, path: str) -> str:
    rows = results["nfe"]["rows"]
    series = []
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        if name in TEACHERS:
            series.append(Series(f"{name} ({mine[0]['nfe']} steps, CFG)", [1, 8], [mine[0]["total"]] * 2, hline=True))
        else:
            series.append(Series(name, [r["nfe"] for r in mine], [r["total"] for r in mine]))
    return line_chart(path, series, title="Judge total vs NFE (mean over prompts)", xlabel="NFE (sampling steps)",
                      ylabel="judge total", xlog2=True, xticks=[1, 2, 4, 8])


def plot_semigroup(results: dict, path: str, K: int = 8) -> str:
    rows = [r for r in results["semigroup"]["rows"] if r["K"] == K]
    series = [Series(r["model"], list(range(len(r["per_step"]))), r["per_step"]) for r in rows]
    return line_chart(path, series, title=f"Semigroup defect per step, K = {K} (mean over prompts)",
                      xlabel="step i of the K-step grid (0 = noisiest)", ylabel="defect", xticks=list(range(K)))


def plot_long(results: dict, path: str, length: str = "16x") -> str:
    rows = [r for r in results["long"]["rows"] if r["length"] == length]
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    # colour = policy, line style = model (dashed for all but the last, i.e. salt-ar)
    series = [Series(f"{r['model']} / {r['policy']}", [s["seconds"] for s in r["segments"]],
                     [s["total"] for s in r["segments"]], dashed=r["model"] != models[-1],
                     colour=PALETTE[policies.index(r["policy"]) % len(PALETTE)]) for r in rows]
    return line_chart(path, series, title=f"Long rollouts ({length} the training length): judge total per 33-frame "
                      "segment", xlabel="time in the video (s, segment centre)", ylabel="judge total")


def write_plots(results: dict, out: str) -> list[str]:
    made = []
    for key, fn in (("nfe", plot_nfe), ("semigroup", plot_semigroup), ("long", plot_long)):
        if results.get(key, {}).get("rows"):
            made.append(os.path.basename(fn(results, os.path.join(out, FIGURES[key]))))
    return made


# ---- markdown --------------------------------------------------------------------------------------------
def _header(results: dict) -> list[str]:
    cfg = results["config"]
    secs = results["seconds"]
    per = ", ".join(f"{k} {v:.0f} s" for k, v in secs.items() if k != "total")
    missing = f" Missing checkpoints (skipped): {', '.join(cfg['missing'])}." if cfg["missing"] else ""
    return [
        "# Quality of the world chain (analytic judge)", "",
        f"Produced by `{results['command']}`", "",
        f"Machine: {results['machine']}", "",
        f"Took {secs['total']:.0f} s ({per}).", "",
        f"Checkpoints: `{cfg['checkpoints']}` (VAE `{cfg['vae']}`, text encoder `{cfg['text_encoder']}`).{missing} "
        f"Prompts: the first {cfg['prompts']} of `{cfg['prompt_file']}` (held-out combinations) for sections 0-1, the "
        f"first {cfg['long_prompts']} for sections 2–5; seed = prompt index. Latents {list(LATENT)} = 33 frames of "
        f"64x64 at {FPS:g} fps. Every model samples on the uniform K-step grid warped by shift {SHIFT:g}; teachers at "
        f"{TEACHER_STEPS} steps with CFG {CFG_SCALE:g} (empty negative prompt), students without CFG; causal models in "
        "chunks under the cache policy they were trained with. Judge scores are in [0, 1], higher is better; "
        "± is the standard error over prompts. Every number below comes from running the checkpoints "
        "(`results.json` holds them all, with per-clip scores).", "",
        "## Findings", "", "<!-- findings -->", "",
    ]


def _reference(sec: dict) -> list[str]:
    dims = [d for d in DIMENSIONS if any(d in r for r in sec["rows"])]
    lines = ["## 0. The scale: real clips and the VAE's ceiling", "",
             "The world's own rendering of each prompt (objects placed by seed = prompt index) and the world VAE's "
             "reconstruction of it (posterior mean, decoded like the models' latents). No model on this VAE's latents "
             "can be expected to beat its reconstructions.", "",
             "| reference | " + " | ".join(dims) + " | total |", "|---|" + "---|" * (len(dims) + 1)]
    for r in sec["rows"]:
        cells = [f(r[d]) for d in dims] + [pm(r["total"], r["total_se"])]
        lines.append(f"| {r['reference']} | " + " | ".join(cells) + " |")
    return lines + [""]


def _nfe(sec: dict) -> list[str]:
    dims = [d for d in DIMENSIONS if any(d in r for r in sec["rows"])]
    lines = ["## 1. Quality vs NFE", "",
             "Mean judge scores over prompts for every student at NFE 1/2/4/8 and the teachers at their step "
             "count.", "",
             "| model | NFE | " + " | ".join(dims) + " | total | s |", "|---|---|" + "---|" * (len(dims) + 2)]
    for r in sec["rows"]:
        lines.append(f"| {r['model']} | {r['nfe']} | " + " | ".join(f(r[d]) for d in dims)
                     + f" | {pm(r['total'], r['total_se'])} | {r['seconds']:.1f} |")
    return lines + ["", f"![judge total vs NFE]({FIGURES['nfe']})", ""]


def _semigroup(sec: dict) -> list[str]:
    kmax = max(r["K"] for r in sec["rows"])
    lines = ["## 2. Semigroup defect along the inference path", "",
             "`training.semigroup.semigroup_defect` on each student's own path (initial noise seeded by the prompt "
             "index; displacement-normalised; causal students chunk by chunk under their trained cache policy). "
             "Lower is more self-consistent.", "",
             "| model | K | defect (mean over steps) | " + " | ".join(f"step {i}" for i in range(kmax)) + " |",
             "|---|---|---|" + "---|" * kmax]
    for r in sec["rows"]:
        steps = [f(v, 5) for v in r["per_step"]] + [""] * (kmax - len(r["per_step"]))
        lines.append(f"| {r['model']} | {r['K']} | {pm(r['mean'], r['se'], 5)} | " + " | ".join(steps) + " |")
    return lines + ["", f"![per-step semigroup defect, K=8]({FIGURES['semigroup']})", ""]


def _consistency(sec: dict) -> list[str]:
    lines = ["## 3. Cross-step consistency", "",
             "Same seed and prompt at K = 2, 4 and 8: PSNR between the decoded 8-bit videos and RMS difference of the "
             "latents, against K = 8. Higher PSNR (lower RMS) = the step count changes the video less.", "",
             "| model | PSNR 2 vs 8 (dB) | PSNR 4 vs 8 (dB) | latent RMS 2 vs 8 | latent RMS 4 vs 8 |",
             "|---|---|---|---|---|"]
    by = {}
    for r in sec["rows"]:
        by.setdefault(r["model"], {})[r["K"]] = r
    for name, ks in by.items():
        a, b = ks.get(2, {}), ks.get(4, {})
        cells = [pm(a.get("psnr"), a.get("psnr_se"), 2), pm(b.get("psnr"), b.get("psnr_se"), 2),
                 pm(a.get("latent_rms"), a.get("latent_rms_se"), 4), pm(b.get("latent_rms"), b.get("latent_rms_se"), 4)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _policy_text(cfg: dict) -> str:
    extra = {"window": f"window {cfg['window_frames']}", "sink_window": f"sink {cfg['sink_frames']} + window "
             f"{cfg['window_frames']}", "full": f"max {cfg['max_frames']}"}[cfg["kind"]]
    return f"{extra}, {cfg['positions']}"


def _long(sec: dict) -> list[str]:
    rows = sec["rows"]
    lines = ["## 4. Long rollouts", "",
             f"Causal models at NFE {sec['nfe']}, 4x and 16x the training length (36 and 144 latent frames = 141 and "
             f"573 frames), cut into consecutive {sec['segment_frames']}-frame segments; each segment is judged "
             "against the prompt at its time offset (`score_clip(..., start_frame=s)`). The 4x figures are the first "
             "4 segments of the 16x rollout: by causality they are the same video (checked on the latents of prompt "
             "0 for every model and policy: "
             + ("identical" if all(c["prefix_identical"] for c in sec["prefix_checks"]) else
                "NOT identical, max |diff| " + f(max(c["max_abs_diff"] for c in sec["prefix_checks"]), 6))
             + ").", "",
             "| model | policy | cache | length | segments | first segment | last segment | last / first |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        who = r["model"] if r["model"] not in AR_TEACHERS else f"{r['model']} ({r['steps']} steps, CFG)"
        lines.append(f"| {who} | {r['policy']} | {_policy_text(r['policy_config'])} | {r['length']} | "
                     f"{len(r['segments'])} | "
                     f"{pm(r['first_total'], r['first_se'])} | {pm(r['last_total'], r['last_se'])} | {f(r['ratio'])} |")
    long16 = [r for r in rows if r["length"] == "16x"]
    if long16:
        lines += ["", "Judge total per segment at 16x (mean over prompts):", "",
                  "| segment | t (s) | " + " | ".join(f"{r['model']} / {r['policy']}" for r in long16) + " |",
                  "|---|---|" + "---|" * len(long16)]
        for k, seg in enumerate(long16[0]["segments"]):
            cells = [f(r["segments"][k]["total"]) for r in long16]
            lines.append(f"| {k} | {seg['seconds']:.2f} | " + " | ".join(cells) + " |")
    return lines + ["", f"![judge total over time, 16x]({FIGURES['long']})", ""]


def _switch(sec: dict) -> list[str]:
    rows = sec["rows"]
    if not rows:
        return ["## 5. Prompt switch", "", sec.get("note", "not run"), ""]
    r0 = rows[0]
    lines = ["## 5. Prompt switch", "",
             f"AR students, {r0['latent_frames']} latent frames (4x) at NFE {r0['nfe']}, trained cache policy; the "
             f"prompt switches at latent frame {r0['switch_latent_frame']} (pixel frame {r0['switch_pixel_frame']}) "
             f"on prompt pairs {[tuple(p) for p in r0['pairs']]}, with and without re-cache. Segments before the "
             "switch are judged against the old prompt, segments after it against the new one (its motion starting "
             "at the switch).", "",
             "| model | re-cache | after: colour | after: shape | after: motion | after: total | before: total |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["after"], r["before"]
        lines.append(f"| {r['model']} | {f(r['recache'])} | {f(a['colour'])} | {f(a['shape'])} | {f(a['motion'])} | "
                     f"{pm(a['total'], a['total_se'])} | {pm(b['total'], b['total_se'])} |")
    return lines + [""]


def _claims(rows: list[dict]) -> list[str]:
    lines = ["## 6. Paper claims", "",
             "Paired per-prompt comparisons (same prompts and seeds). A−B is the mean difference over the n "
             "prompts, SE its standard error, t the two-sided 95 % Student-t quantile for n − 1 degrees of freedom; "
             "verdict: **holds** if A−B > t·SE, **does not hold** if A−B < −t·SE, else **within noise** (for a ≥ "
             "claim, within noise is what the claim allows). Defects: lower is better, so A is the baseline.", "",
             "| id | claim | A | B | A | B | A−B | SE | n | t | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        digits = 5 if "defect" in r["claim"] else 4
        cells = [r["id"], r["claim"], r["a"], r["b"], f(r["a_mean"], digits), f(r["b_mean"], digits),
                 f(r["diff"], digits), f(r["se"], digits), str(r["n"]), f(r["t"], 2), r["verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def write_markdown(results: dict, path: str) -> str:
    lines = _header(results)
    for key, fn, title in (("reference", _reference, "0. The scale"), ("nfe", _nfe, "1. Quality vs NFE"),
                           ("semigroup", _semigroup, "2. Semigroup defect"),
                           ("consistency", _consistency, "3. Cross-step consistency"),
                           ("long", _long, "4. Long rollouts"), ("switch", _switch, "5. Prompt switch")):
        sec = results.get(key)
        lines += fn(sec) if sec and (sec.get("rows") or key == "switch") else [f"## {title}", "", "Not run.", ""]
    lines += _claims(results.get("claims", []))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    return path
