"""The command line: --set errors that list what exists, offline --print-api, one line for no server."""
import json
import re
import socket
from pathlib import Path

import pytest
from _comfyui_client_fakes import FakeComfy
from test_headless import EXPECTED_API, OBJECT_INFO, ui_workflow

from salt_core.comfyui_client import runner
from salt_core.comfyui_client.overrides import apply_overrides
from salt_core.comfyui_client.workflow import WorkflowError

README = Path(__file__).resolve().parents[1] / "README.md"


def prompt():
    return json.loads(json.dumps(EXPECTED_API))


@pytest.fixture
def no_server():
    """The address of a port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}", port


def test_set_of_an_unknown_input_lists_the_nodes_inputs():
    with pytest.raises(WorkflowError) as e:
        apply_overrides(prompt(), ["My sampler.sed=1"], OBJECT_INFO)
    assert str(e.value) == ("--set 'My sampler.sed=1': node 3 'My sampler' (Sampler) has no input 'sed'; its inputs: "
                            "model, seed, steps, mode, text, denoise")
    with pytest.raises(WorkflowError, match=r"node 7 \(Text\) has no input 'text'; its inputs: value; inputs the file "
                                            "leaves out can only be checked against a running server"):
        apply_overrides(prompt(), ["7.text=hi"])  # no definitions at hand (an API file offline)


def test_set_of_a_declared_input_the_prompt_leaves_out_is_accepted():
    p = prompt()
    del p["3"]["inputs"]["denoise"]  # an optional widget an API export may omit
    fetched = []
    apply_overrides(p, ["3.denoise=0.7"], lambda: fetched.append(1) or OBJECT_INFO)
    assert p["3"]["inputs"]["denoise"] == 0.7 and fetched == [1]  # fetched only because it was needed
    apply_overrides(p, ["3.seed=1"], lambda: pytest.fail("the definitions are not needed for a present input"))


def test_set_of_an_unknown_node_lists_ids_titles_and_types():
    with pytest.raises(WorkflowError) as e:
        apply_overrides(prompt(), ["Nope.x=1"])
    assert str(e.value) == ("no node with id, title or type 'Nope'; the nodes are: 1 (Loader), "
                            "3 'My sampler' (Sampler), 5 (Save), 7 (Text)")
    p = prompt()
    p["5"]["_meta"]["title"] = "First save"
    p["9"] = p["5"] | {"_meta": {"title": "Second save"}}
    with pytest.raises(WorkflowError, match=r"'Save' matches several nodes: 5 'First save' \(Save\), 9 'Second save' "
                                            r"\(Save\); use a node id"):
        apply_overrides(p, ["Save.prefix=a"])


def test_a_bad_set_in_a_run_queues_nothing(tmp_path, capsys):
    server = FakeComfy(object_info=OBJECT_INFO)
    wf = tmp_path / "ui.json"
    wf.write_text(json.dumps(ui_workflow()))
    try:
        status = runner.main(["--server", server.url, str(wf), "--out", str(tmp_path), "--set", "Sampler.sed=3"])
    finally:
        server.close()
    assert status == 2 and server.posted == []
    last = capsys.readouterr().out.strip()
    assert last.endswith("has no input 'sed'; its inputs: model, seed, steps, mode, text, denoise")


def test_print_api_of_a_ui_file_without_a_server_points_to_the_api_copies(tmp_path, capsys, no_server):
    url, port = no_server
    ui = tmp_path / "wf.json"
    ui.write_text(json.dumps(ui_workflow()))
    assert runner.main(["--server", url, str(ui), "--print-api"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cannot reach ComfyUI at 127.0.0.1:{port}: ")
    assert "API-format files work offline: the API copies in example_workflows/api/ are" in err
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "wf.json").write_text(json.dumps(EXPECTED_API))
    assert runner.main(["--server", url, str(ui), "--print-api"]) == 2
    assert f"API-format files work offline: {tmp_path / 'api' / 'wf.json'} is this workflow's API copy" in \
        capsys.readouterr().err
    assert runner.main(["--server", url, str(tmp_path / "api" / "wf.json"), "--print-api", "--set", "3.seed=9"]) == 0
    assert json.loads(capsys.readouterr().out)["3"]["inputs"]["seed"] == 9


@pytest.mark.parametrize("workflow", [EXPECTED_API, ui_workflow()], ids=["api", "ui"])
def test_no_server_is_reported_once(tmp_path, no_server, workflow):
    url, port = no_server
    lines = []
    status, saved = runner.run_workflow(url, json.dumps(workflow), str(tmp_path), log=lines.append)
    assert (status, saved) == (2, [])
    assert len(lines) == 1 and lines[0].startswith(f"cannot reach ComfyUI at 127.0.0.1:{port}: "), lines


def test_bad_arguments_are_usage_errors(tmp_path, capsys):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(EXPECTED_API))
    assert runner.main(["--server", "ftp://host", str(wf)]) == 2
    assert "--server 'ftp://host': expected http://HOST:PORT" in capsys.readouterr().out
    assert runner.main(["--server", "http://127.0.0.1:8188", str(tmp_path / "missing.json")]) == 2
    wf.write_bytes(b"\xff\xfe not text")
    assert runner.main([str(wf), "--print-api"]) == 2
    with pytest.raises(SystemExit) as e:
        runner.main([str(wf), "--timeout", "0"])
    assert e.value.code == 2


def test_the_documented_exit_statuses_are_the_ones_used():
    from salt_core.comfyui_client import errors
    codes = {"done": errors.EXIT_OK, "failed": errors.EXIT_FAILED, "nothing was queued": errors.EXIT_USAGE,
             "interrupted": errors.EXIT_STOPPED, "unsafe": errors.EXIT_UNSAFE}
    assert sorted(codes.values()) == [0, 1, 2, 3, 4]
    readme = README.read_text().split("### Headless runs", 1)[1].split("\n### ", 1)[0]
    for text in (readme, runner.__doc__):
        text = " ".join(text.split("Exit status:", 1)[1].split())
        documented = dict(re.findall(r"\b(\d) ([a-z][^:;,(]+)", text))
        for meaning, code in codes.items():
            assert documented[str(code)].startswith(meaning), (code, documented)
