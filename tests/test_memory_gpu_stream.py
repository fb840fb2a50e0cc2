"""benchmarks/perf/gpu_stream.py runs its CPU path end to end (tiny settings, in a subprocess) and writes a table
with one measured row per case and the backends it could not measure."""
import re
import subprocess
import sys
from pathlib import Path

from salt_core.dit.attention import available_backends

ROOT = Path(__file__).resolve().parents[1]


def test_the_stream_benchmark_measures_every_case_on_the_cpu(tmp_path):
    out = tmp_path / "table.md"
    cmd = [sys.executable, str(ROOT / "benchmarks/perf/gpu_stream.py"), "--device", "cpu", "--preset", "tiny",
           "--width", "32", "--height", "32", "--latent-frames", "6", "--backends", "sdpa,flash", "--weights",
           "bf16,fp8", "--compile", "off", "--policies", "full,window", "--swap", "1", "--repeats", "1",
           "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "32x32, 6 latent frames = 21 video frames" in text
    rows = [line.split(" | ") for line in text.splitlines() if re.match(r"\| (sdpa|flash) \(", line)]
    flash = ["flash"] if "flash" in available_backends() else []
    want = [(b, w, p, "all") for w in ("bf16", "fp8") for b in ["sdpa", *flash] for p in ("full", "window")]
    assert [(r[0].split()[1], r[1], r[3], r[4]) for r in rows] == want + [("sdpa", "bf16", "full", "1")]
    for r in rows:
        first_chunk, total, fps = float(r[6]), float(r[7]), float(r[8])
        # the table prints seconds to 3 decimals and FPS to 2: allow exactly that rounding
        rounding = 21 * 0.0005 / max(total - 0.0005, 1e-6) ** 2 + 0.005
        assert 0 < first_chunk <= total and abs(fps - 21 / total) <= 1.01 * rounding
    assert "no swap" not in rows[-1][10]  # 1 of the tiny model's 2 blocks resident: a real swap
    assert bool(flash) != ("`flash`: not importable in this environment" in text)
