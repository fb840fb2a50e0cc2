"""The `python -m salt_core` command as a new user meets it: defaults shown, devices checked, trained settings kept
unless overridden, bad arguments refused at once with one line."""
import subprocess
import sys

import pytest
import torch

from salt_core.cli import build_parser, main
from salt_core.pipeline import DEFAULT_ASSETS

HAS_DEFAULT = (DEFAULT_ASSETS / "dit.safetensors").is_file()
needs_default = pytest.mark.skipif(not HAS_DEFAULT, reason="no embedded default committed")


def run(args, capsys):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_help_shows_the_defaults_and_explains_every_option():
    text = build_parser()._subparsers._group_actions[0].choices["generate"].format_help()
    for shown in ("(default: 16.0)", "(default: 4.0)", "(default: auto)", "64 for the embedded default",
                  "0 = the model's trained grid", "0 = the model's", "cache_relative", "vocabulary"):
        assert shown in text, shown
    assert "(default: None)" not in text and text.count("(default: the embedded default model)") == 1
    for action in build_parser()._subparsers._group_actions[0].choices["generate"]._actions:
        assert action.help, action.dest  # no option without a word of help


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "gpu", "cuda:1"])
def test_an_unavailable_device_is_one_clear_line(tmp_path, capsys, device):
    rc, _, err = run(["generate", "--prompt", "a red circle", "--out", str(tmp_path / "a.mp4"), "--device", device],
                     capsys)
    assert rc == 2 and err.startswith(f"error: device {device!r}: no CUDA GPU is usable here")
    assert "Traceback" not in err and not (tmp_path / "a.mp4").exists()


def test_an_unknown_device_lists_the_allowed_ones(tmp_path, capsys):
    rc, _, err = run(["generate", "--prompt", "x", "--out", str(tmp_path / "a.mp4"), "--device", "tpu"], capsys)
    assert rc == 2 and "device 'tpu' is unknown; allowed: auto, cpu, cuda, cuda:N, mps" in err


@needs_default
def test_vocabulary_lists_the_words_the_default_knows(capsys):
    rc, out, _ = run(["vocabulary"], capsys)
    assert rc == 0 and "words known to 'embedded-default'" in out
    assert {"circle", "square", "triangle", "diamond", "cross", "red", "left", "bounces"} <= set(out.split())


@needs_default
def test_info_says_what_the_model_was_trained_with(capsys):
    rc, out, _ = run(["info"], capsys)
    assert rc == 0
    assert "causal, chunks of 3 latent frames, 4 steps [1000, 750, 500, 250] shift 5" in out
    assert "cache sink 3 + window 3, cache_relative positions" in out


@needs_default
def test_overriding_the_trained_policy_with_its_own_values_changes_nothing(tmp_path, capsys):
    """`--policy sink_window --sink 3 --window 3` (its own policy) used to switch the embedded default to absolute
    positions."""
    from salt_core.video_io import read_mp4

    base = ["generate", "--prompt", "a red circle moves to the right", "--frames", "33", "--threads", "1"]
    assert run(base + ["--out", str(tmp_path / "a.mp4")], capsys)[0] == 0
    rc, _, err = run(base + ["--out", str(tmp_path / "b.mp4"), "--policy", "sink_window", "--sink", "3", "--window", "3",
                             "--steps", "0", "--chunk-frames", "0"], capsys)
    assert rc == 0 and "note: cache" not in err  # nothing differs from the trained settings
    assert torch.equal(read_mp4(tmp_path / "a.mp4")[0], read_mp4(tmp_path / "b.mp4")[0])
    rc, _, err = run(base + ["--out", str(tmp_path / "c.mp4"), "--window", "6"], capsys)
    assert rc == 0 and "note: cache window_frames 6 (trained: 3)" in err


@needs_default
def test_unknown_words_are_reported_once(tmp_path, capsys):
    rc, _, err = run(["generate", "--prompt", "a red zebra moves left", "--frames", "9", "--out",
                      str(tmp_path / "z.mp4")], capsys)
    assert rc == 0
    assert err.count("zebra") == 1 and "warning: words unknown to the text encoder (encoded as <unk>): zebra" in err


@pytest.mark.parametrize("args, message", [
    (["--frames", "0"], "--frames must be between 1 and 1000000"),
    (["--frames", "4000000000001"], "--frames must be between 1 and 1000000"),
    (["--seconds", "inf"], "--seconds must be finite"),
    (["--seconds", "1e12"], "--seconds must be between"),
    (["--seconds", "-5"], "--seconds must be between"),
    (["--seed", str(2**64)], "--seed must be between 0 and 18446744073709551615"),
    (["--threads", "-2"], "--threads must be between 1 and 4096"),
    (["--threads", "100000"], "--threads must be between 1 and 4096"),
    (["--height", "100000"], "--height must be between 16 and 8192"),
])
def test_absurd_arguments_are_refused_at_once(tmp_path, args, message):
    """Each refusal comes from argument parsing, before any model loads (a fresh process, timed by the test run)."""
    cmd = [sys.executable, "-m", "salt_core", "generate", "--prompt", "x", "--out", str(tmp_path / "a.mp4"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "a.mp4").exists()


@needs_default
def test_a_length_that_does_not_fill_whole_chunks_names_the_nearest_that_do(tmp_path, capsys):
    rc, _, err = run(["generate", "--prompt", "a red circle", "--frames", "37", "--out", str(tmp_path / "a.mp4")],
                     capsys)
    assert rc == 2 and "the nearest video frame counts that do are 33 and 45 (12k − 3 frames for chunks of 3)" in err


@needs_default
def test_a_length_that_is_not_4k_plus_1_names_the_nearest_counts_and_those_of_whole_chunks(tmp_path, capsys):
    rc, _, err = run(["generate", "--prompt", "a red circle", "--frames", "40", "--out", str(tmp_path / "a.mp4")],
                     capsys)
    assert rc == 2 and "got 40: the nearest are 37 and 41" in err
    assert "for this model's chunks of 3 latent frames, the nearest that fill whole chunks are 33 and 45" in err
    assert not (tmp_path / "a.mp4").exists()


def test_an_out_path_that_cannot_be_written_is_refused_before_sampling(tmp_path, capsys):
    rc, _, err = run(["generate", "--prompt", "x", "--out", str(tmp_path)], capsys)
    assert rc == 2 and "it is a folder; give a file name" in err
    (tmp_path / "file").write_text("")
    rc, _, err = run(["generate", "--prompt", "x", "--out", str(tmp_path / "file" / "a.mp4")], capsys)
    assert rc == 2 and "is a file, not a folder" in err


@needs_default
def test_sigterm_during_generate_leaves_no_file_and_no_temp(tmp_path):
    """`kill` takes Ctrl+C's clean path: exit 130, neither the target nor a hidden temp is left."""
    import signal
    import time

    out = tmp_path / "long.mp4"
    cmd = [sys.executable, "-m", "salt_core", "generate", "--prompt", "a red circle moves to the right",
           "--seconds", "600", "--threads", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # a bound against hanging, not a timing: a loaded machine is slow
    def temps():
        return {p.name for p in tmp_path.iterdir() if p.name.startswith(".long.")}

    seen = set()
    while time.monotonic() < deadline and not seen & temps():  # the same temp twice, 0.2 s apart: the MP4's,
        seen = temps()  # not the instant probe of check_writable (a SIGTERM then would find no handler yet)
        time.sleep(0.2)
    assert seen & temps(), "generation never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted: nothing was written" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@needs_default
def test_another_size_than_the_trained_one_is_said(tmp_path, capsys):
    rc, _, err = run(["generate", "--prompt", "a red circle", "--frames", "9", "--height", "32", "--width", "48",
                      "--out", str(tmp_path / "s.mp4")], capsys)
    assert rc == 0 and "note: size 48x32: the model was trained at 64x64" in err


@needs_default
def test_a_vae_tile_below_the_receptive_field_or_a_budget_too_small_is_refused_before_sampling(tmp_path, capsys,
                                                                                             monkeypatch):
    import salt_core.pipeline as pipeline

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampling started")

    monkeypatch.setattr(pipeline, "stream_latents", no_sampling)
    base = ["generate", "--prompt", "a red circle", "--frames", "9", "--width", "320", "--out", str(tmp_path / "a.mp4")]
    rc, _, err = run(base + ["--vae-tile", "4"], capsys)
    assert rc == 2 and "--vae-tile" in err and "smaller than the decoder's receptive field" in err
    assert "allowed: tile sides >= 18 latent cells" in err
    rc, _, err = run(base + ["--vae-memory", "2"], capsys)
    assert rc == 2 and "memory_budget=2097152 bytes (2 MiB) is too small" in err and "allowed: budget >=" in err
    assert not (tmp_path / "a.mp4").exists()


@needs_default
def test_a_tiled_vae_decode_is_said_and_writes_the_video(tmp_path, capsys):
    rc, out, err = run(["generate", "--prompt", "a red circle", "--frames", "9", "--width", "320", "--vae-tile", "18",
                        "--out", str(tmp_path / "t.mp4")], capsys)
    assert rc == 0 and "note: VAE decode in 4 tiles of 144x64 px (overlap 64x64 px)" in err
    assert "wrote" in out and (tmp_path / "t.mp4").stat().st_size > 0
