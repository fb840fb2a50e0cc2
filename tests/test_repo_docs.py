"""What a new reader meets: the README's two commands first with the CPU-torch note before them, and no pointer to
documents that are not in the repository."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_starts_with_the_two_commands_and_says_how_to_get_cpu_torch_before_them():
    text = (ROOT / "README.md").read_text()
    first_block = text.index("```bash")
    assert "pip install torch==2.13.0" in text[:first_block]  # read before running the commands that need it
    commands = text[first_block:text.index("```", first_block + 7)].splitlines()[1:]
    assert commands[0].startswith("pip install -e . && python -m salt_core generate")
    assert commands[1].startswith('pip install -e ".[test]" && python -m pytest -q tests')


def test_no_source_points_to_documents_outside_the_repository():
    pattern = re.compile(r"DESIGN\s*§|REFERENCES\.md|DESIGN\.md")
    hits = []
    for path in ROOT.rglob("*"):
        if path.suffix not in {".py", ".md", ".yaml", ".toml", ".sh"} or {".git", "runs"} & set(path.parts):
            continue
        if path == Path(__file__):
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:80]}")
    assert not hits, "\n".join(hits)
