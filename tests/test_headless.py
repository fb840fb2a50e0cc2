"""Headless runs: the UI -> API converter and the client, against a tiny fake ComfyUI on 127.0.0.1."""
import json

import pytest
from _comfyui_client_fakes import FakeComfy

from salt_core.comfyui_client import runner as headless
from salt_core.comfyui_client.overrides import apply_overrides
from salt_core.comfyui_client.widgets import widget_values
from salt_core.comfyui_client.workflow import WorkflowError, load_workflow, ui_to_api

OBJECT_INFO = {
    "Loader": {"input": {"required": {"name": [["a.safetensors", "b.safetensors"], {}]}},
               "input_order": {"required": ["name"]}, "output": ["MODEL"], "display_name": "Loader"},
    "Sampler": {"input": {"required": {"model": ["MODEL", {}], "seed": ["INT", {"control_after_generate": True}],
                                       "steps": ["INT", {"default": 4}], "mode": ["COMBO", {"options": ["x", "y"]}]},
                          "optional": {"text": ["STRING", {"forceInput": True}], "denoise": ["FLOAT", {}]}},
                "input_order": {"required": ["model", "seed", "steps", "mode"], "optional": ["text", "denoise"]},
                "output": ["LATENT"], "display_name": "Sampler"},
    "Filter": {"input": {"required": {"latent": ["LATENT", {}], "strength": ["FLOAT", {}]}}, "output": ["LATENT"]},
    "Save": {"input": {"required": {"latent": ["LATENT", {}], "prefix": ["STRING", {}]}}, "output": [],
             "output_node": True},
    "Text": {"input": {"required": {"value": ["STRING", {"multiline": True}]}}, "output": ["STRING"]},
    "LoadImage": {"input": {"required": {"image": [["x.png"], {"image_upload": True}], "scale": ["FLOAT", {}]}},
                  "output": ["IMAGE"]},
}


def node(nid, kind, widgets=None, inputs=(), outputs=(), mode=0, title=None):
    n = {"id": nid, "type": kind, "pos": [0, 0], "size": [100, 50], "mode": mode, "flags": {}, "order": nid,
         "inputs": list(inputs), "outputs": list(outputs), "properties": {}}
    if widgets is not None:
        n["widgets_values"] = widgets
    if title:
        n["title"] = title
    return n


def ui_workflow():
    """Loader -> Reroute -> Sampler (seed with 'randomize', text via a Text node, steps from a primitive)
    -> Filter (bypassed) -> Save; plus a muted Save and a Note."""
    nodes = [
        node(1, "Loader", ["b.safetensors"], outputs=[{"name": "MODEL", "type": "MODEL", "links": [1]}]),
        node(2, "Reroute", inputs=[{"name": "", "type": "*", "link": 1}],
             outputs=[{"name": "", "type": "MODEL", "links": [2]}]),
        node(3, "Sampler", [42, "randomize", 4, "y", 0.5], title="My sampler", inputs=[
            {"name": "model", "type": "MODEL", "link": 2},
            {"name": "steps", "type": "INT", "widget": {"name": "steps"}, "link": 6},
            {"name": "text", "type": "STRING", "link": 7}],
            outputs=[{"name": "LATENT", "type": "LATENT", "links": [3, 8]}]),
        node(4, "Filter", [0.3], mode=4, inputs=[{"name": "latent", "type": "LATENT", "link": 3}],
             outputs=[{"name": "LATENT", "type": "LATENT", "links": [4]}]),
        node(5, "Save", ["out/x"], inputs=[{"name": "latent", "type": "LATENT", "link": 4}]),
        node(6, "PrimitiveNode", [8, "fixed"], outputs=[{"name": "INT", "type": "INT", "links": [6],
                                                        "widget": {"name": "steps"}}]),
        node(7, "Text", ["hello"], outputs=[{"name": "STRING", "type": "STRING", "links": [7]}]),
        node(8, "Save", ["muted"], mode=2, inputs=[{"name": "latent", "type": "LATENT", "link": 8}]),
        node(9, "Note", ["just a note"]),
    ]
    links = [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"], [3, 3, 0, 4, 0, "LATENT"],
             [4, 4, 0, 5, 0, "LATENT"], [6, 6, 0, 3, 1, "INT"], [7, 7, 0, 3, 2, "STRING"],
             [8, 3, 0, 8, 0, "LATENT"]]
    return {"last_node_id": 9, "last_link_id": 8, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


EXPECTED_API = {
    "1": {"inputs": {"name": "b.safetensors"}, "class_type": "Loader", "_meta": {"title": "Loader"}},
    "3": {"inputs": {"model": ["1", 0], "seed": 42, "steps": 8, "mode": "y", "denoise": 0.5, "text": ["7", 0]},
          "class_type": "Sampler", "_meta": {"title": "My sampler"}},
    "5": {"inputs": {"latent": ["3", 0], "prefix": "out/x"}, "class_type": "Save", "_meta": {"title": "Save"}},
    "7": {"inputs": {"value": "hello"}, "class_type": "Text", "_meta": {"title": "Text"}},
}


# ---- converter -------------------------------------------------------------------------------------

def test_ui_to_api_resolves_widgets_links_reroutes_bypass_mute_and_primitives():
    assert ui_to_api(ui_workflow(), OBJECT_INFO) == EXPECTED_API


def test_widget_values_skip_control_and_upload_extras():
    assert widget_values({"widgets_values": [7, "increment", 2, "x"]}, OBJECT_INFO["Sampler"]) == \
        {"seed": 7, "steps": 2, "mode": "x"}
    assert widget_values({"widgets_values": ["x.png", "image", 2.0]}, OBJECT_INFO["LoadImage"]) == \
        {"image": "x.png", "scale": 2.0}
    assert widget_values({"widgets_values": {"steps": 3, "other": 1}}, OBJECT_INFO["Sampler"]) == \
        {"steps": 3, "seed": 0, "mode": "x"}  # missing widgets get their defaults, as in the frontend


def test_widget_values_of_old_and_odd_saves():
    # very old saves stored a boolean control value; a seed widget may carry one its spec does not declare
    assert widget_values({"widgets_values": [5, True, 2, "y"]}, OBJECT_INFO["Sampler"]) == \
        {"seed": 5, "steps": 2, "mode": "y"}
    spec = {"input": {"required": {"seed": ["INT", {"control_after_generate": False}], "name": ["STRING", {}]}}}
    assert widget_values({"widgets_values": [5, "fixed", "a"]}, spec) == {"seed": 5, "name": "a"}
    spec = {"input": {"required": {"n": ["INT", {}], "how": ["COMBO", {"options": ["fixed", "other"]}]}}}
    assert widget_values({"widgets_values": [5, "fixed"]}, spec) == {"n": 5, "how": "fixed"}
    assert widget_values({}, OBJECT_INFO["Save"]) == {"prefix": ""}


def test_links_may_be_objects():
    wf = ui_workflow()
    wf["links"] = [dict(zip(("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"), link))
                   for link in wf["links"]]
    assert ui_to_api(wf, OBJECT_INFO) == EXPECTED_API


def test_converter_names_a_missing_node_type_and_refuses_subgraphs():
    wf = ui_workflow()
    wf["nodes"][0]["type"] = "NotInstalled"
    with pytest.raises(WorkflowError, match=r"node 1 \(NotInstalled\).*not available on the server"):
        ui_to_api(wf, OBJECT_INFO)
    wf = ui_workflow() | {"definitions": {"subgraphs": [{"id": "x"}]}}
    with pytest.raises(WorkflowError, match="subgraphs"):
        ui_to_api(wf, OBJECT_INFO)


def test_load_workflow_accepts_both_formats():
    assert load_workflow(json.dumps(ui_workflow()))["version"] == 0.4
    assert load_workflow(json.dumps({"prompt": EXPECTED_API})) == EXPECTED_API
    with pytest.raises(WorkflowError, match="neither a UI workflow"):
        load_workflow('{"a": 1}')


def test_overrides_by_id_title_and_type():
    prompt = json.loads(json.dumps(EXPECTED_API))
    apply_overrides(prompt, ["3.seed=7", "My sampler.mode=x", "Save.prefix=videos/a", 'Text.value="a, b"'])
    assert prompt["3"]["inputs"]["seed"] == 7 and prompt["3"]["inputs"]["mode"] == "x"
    assert prompt["5"]["inputs"]["prefix"] == "videos/a" and prompt["7"]["inputs"]["value"] == "a, b"
    with pytest.raises(WorkflowError, match="no node with id, title or type 'Nope'"):
        apply_overrides(prompt, ["Nope.x=1"])
    with pytest.raises(WorkflowError, match="NODE.INPUT=VALUE"):
        apply_overrides(prompt, ["seed=1"])


# ---- against a fake ComfyUI server -----------------------------------------------------------------

@pytest.fixture
def fake_server(request):
    server = FakeComfy(getattr(request, "param", "success"), OBJECT_INFO)
    yield server
    server.close()


def test_headless_runs_a_ui_workflow_and_downloads_its_outputs(fake_server, tmp_path):
    lines = []
    status, saved = headless.run_workflow(fake_server.url, json.dumps(ui_workflow()), str(tmp_path),
                                          ["My sampler.seed=5"], timeout=20, log=lines.append)
    assert status == 0, lines
    [body] = fake_server.posted
    assert body["client_id"] == fake_server.ws_client_ids[0]
    assert body["prompt"]["3"]["inputs"] == EXPECTED_API["3"]["inputs"] | {"seed": 5}
    assert saved == [str(tmp_path / "out" / "x_00001_.mp4")]
    assert (tmp_path / "out" / "x_00001_.mp4").read_bytes() == b"MP4 BYTES"
    assert "  node 3: 1/2" in lines


@pytest.mark.parametrize("fake_server", ["late history"], indirect=True)
def test_headless_waits_for_the_history_entry(fake_server, tmp_path):
    status, saved = headless.run_workflow(fake_server.url, json.dumps(EXPECTED_API), str(tmp_path), timeout=20,
                                          log=lambda m: None)
    assert status == 0 and len(saved) == 1 and fake_server.history_calls == 3


@pytest.mark.parametrize("fake_server", ["refused"], indirect=True)
def test_headless_prints_the_servers_node_errors(fake_server, tmp_path):
    lines = []
    status, _ = headless.run_workflow(fake_server.url, json.dumps({"prompt": EXPECTED_API}), str(tmp_path),
                                      timeout=20, log=lines.append)
    assert status == 1
    assert "node 3 (Sampler): Value not in list: mode: 'z' not in ['x', 'y']" in "\n".join(lines)


@pytest.mark.parametrize("fake_server", ["error"], indirect=True)
def test_headless_fails_when_a_node_raises(fake_server, tmp_path, capsys):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(EXPECTED_API))
    status = headless.main(["--server", fake_server.url, str(wf), "--out", str(tmp_path), "--timeout", "20"])
    assert status == 1
    assert "node 3 (Sampler) failed: ValueError: frames must be of the form 4k+1" in capsys.readouterr().out


@pytest.mark.parametrize("fake_server", ["interrupted"], indirect=True)
def test_headless_reports_an_interrupted_run(fake_server, tmp_path):
    status, saved = headless.run_workflow(fake_server.url, json.dumps(EXPECTED_API), str(tmp_path), timeout=20,
                                          log=lambda m: None)
    assert (status, saved) == (3, [])


def test_print_api_converts_with_the_servers_object_info(fake_server, tmp_path, capsys):
    wf = tmp_path / "ui.json"
    wf.write_text(json.dumps(ui_workflow()))
    assert headless.main(["--server", fake_server.url, str(wf), "--print-api"]) == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED_API


def test_unreachable_server_is_a_usage_error(tmp_path):
    status, _ = headless.run_workflow("http://127.0.0.1:9", json.dumps(ui_workflow()), str(tmp_path),
                                      log=lambda m: None)
    assert status == 2
