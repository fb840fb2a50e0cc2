"""Section 6: the paper's claims, each checked on paired per-prompt values (same prompts and seeds).

For a claim "A > B" or "A >= B", d = A - B per prompt; mean(d) and its standard error SE over the n prompts,
and t = the two-sided 95 % Student-t quantile with n - 1 degrees of freedom (12.7 for n = 2, 3.18 for n = 4,
2.13 for n = 16):
    holds            mean(d) >  t·SE   (A is higher beyond the noise)
    does not hold    mean(d) < −t·SE   (B is higher beyond the noise)
    within noise     otherwise          (for a ">=" claim this is what the claim allows)
"""
from __future__ import annotations

from nfe_table import per_prompt_totals
from stats import mean, paired

# two-sided 95 % quantiles of Student's t by degrees of freedom (1..30); 2.0 beyond (1.96-2.04)
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(n: int) -> float:
    """Critical value for a mean over n paired values (n - 1 degrees of freedom)."""
    return T95[n - 2] if n - 1 <= len(T95) else 2.0


def verdict(diff: float, err: float, n: int) -> str:
    if n < 2 or err != err:
        return "n/a (needs >= 2 prompts)"
    t = t95(n)
    if diff > t * err:
        return "holds"
    if diff < -t * err:
        return "does not hold"
    return "within noise"


def _row(cid: str, claim: str, relation: str, a_label: str, a: list, b_label: str, b: list) -> dict:
    row = {"id": cid, "claim": claim, "relation": relation, "a": a_label, "b": b_label}
    if not a or not b:
        return {**row, "n": 0, "a_mean": float("nan"), "b_mean": float("nan"), "diff": float("nan"),
                "se": float("nan"), "t": float("nan"), "verdict": "n/a (not measured)"}
    diff, err, n = paired(a, b)
    return {**row, "n": n, "a_mean": mean(a), "b_mean": mean(b), "diff": diff, "se": err,
            "t": t95(n) if n >= 2 else float("nan"), "verdict": verdict(diff, err, n)}


def _defects(results: dict, model: str, K=None) -> list[float]:
    rows = [r for r in results.get("semigroup", {}).get("rows", []) if r["model"] == model]
    if K is not None:
        got = [r["per_prompt"] for r in rows if r["K"] == K]
        return got[0] if got else []
    if not rows:
        return []
    return [mean(v) for v in zip(*[r["per_prompt"] for r in rows])]  # per prompt, mean over K


def run(results: dict) -> list[dict]:
    nfe = results.get("nfe", {})

    def tot(model, n):
        return per_prompt_totals(nfe, model, n)

    rows = [
        _row("a1", "dmd-4 degrades beyond its grid: total at NFE 4 > NFE 8", ">",
             "dmd-4 @4", tot("dmd-4", 4), "dmd-4 @8", tot("dmd-4", 8)),
        _row("a2", "dmd-8 degrades from NFE 4 to 8: total at NFE 4 > NFE 8", ">",
             "dmd-8 @4", tot("dmd-8", 4), "dmd-8 @8", tot("dmd-8", 8)),
        _row("a3", "sc-dmd-8 does not degrade: total at NFE 8 >= NFE 4", ">=",
             "sc-dmd-8 @8", tot("sc-dmd-8", 8), "sc-dmd-8 @4", tot("sc-dmd-8", 4)),
        _row("b1", "sc-dmd-8 at NFE 4 >= dmd-8 at NFE 4", ">=",
             "sc-dmd-8 @4", tot("sc-dmd-8", 4), "dmd-8 @4", tot("dmd-8", 4)),
        _row("b2", "sc-dmd-8 at NFE 4 >= dmd-4 at NFE 4", ">=",
             "sc-dmd-8 @4", tot("sc-dmd-8", 4), "dmd-4 @4", tot("dmd-4", 4)),
        _row("c1", "salt-ar >= ar-dmd at NFE 2", ">=", "salt-ar @2", tot("salt-ar", 2), "ar-dmd @2", tot("ar-dmd", 2)),
        _row("c2", "salt-ar >= ar-dmd at NFE 4", ">=", "salt-ar @4", tot("salt-ar", 4), "ar-dmd @4", tot("ar-dmd", 4)),
    ]
    ks = sorted({r["K"] for r in results.get("semigroup", {}).get("rows", [])})
    for ours, base, first in (("sc-dmd-8", "dmd-8", 1), ("salt-ar", "ar-dmd", len(ks) + 2)):
        for j, K in enumerate([*ks, None]):
            k_text = f"K={K}" if K is not None else "mean over K"
            rows.append(_row(f"d{first + j}", f"semigroup defect of {ours} < {base} ({k_text})", ">",
                             f"{base} defect", _defects(results, base, K),
                             f"{ours} defect", _defects(results, ours, K)))
    return rows
