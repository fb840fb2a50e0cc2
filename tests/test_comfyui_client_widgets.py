"""Which inputs are widgets: every widget type the ComfyUI frontend has, not only the five primitive ones.

The node definitions are the ones ComfyUI 0.3.64 declares (comfy_extras/nodes_audio.py, nodes_load_3d.py,
nodes_webcam.py) as /object_info lists them; the saved values are what frontend 1.27 writes for those nodes.
"""
from salt_core.comfyui_client.widgets import widget_inputs, widget_values
from salt_core.comfyui_client.workflow import ui_to_api

INT = ["INT", {"default": 1024, "min": 1, "max": 4096, "step": 1}]
DEFS = {
    "RecordAudio": {"input": {"required": {"audio": ["AUDIO_RECORD", {}]}}, "input_order": {"required": ["audio"]},
                    "output": ["AUDIO"], "display_name": "Record Audio"},
    "LoadAudio": {"input": {"required": {"audio": [["voice.mp3", "music.mp3"], {"audio_upload": True}]}},
                  "input_order": {"required": ["audio"]}, "output": ["AUDIO"]},
    "SaveAudio": {"input": {"required": {"audio": ["AUDIO", {}],
                                         "filename_prefix": ["STRING", {"default": "audio/ComfyUI"}]}},
                  "input_order": {"required": ["audio", "filename_prefix"]}, "output": [], "output_node": True},
    "Load3D": {"input": {"required": {"model_file": [["toy.glb"], {"file_upload": True}], "image": ["LOAD_3D", {}],
                                      "width": INT, "height": INT}},
               "input_order": {"required": ["model_file", "image", "width", "height"]}, "output": ["IMAGE"]},
    "WebcamCapture": {"input": {"required": {"image": ["WEBCAM", {}], "width": ["INT", {"default": 0}],
                                             "height": ["INT", {"default": 0}],
                                             "capture_on_queue": ["BOOLEAN", {"default": True}]}},
                      "input_order": {"required": ["image", "width", "height", "capture_on_queue"]},
                      "output": ["IMAGE"]},
}


def test_an_audio_recording_input_is_a_widget_and_keeps_its_value():
    assert widget_values({"widgets_values": ["rec.wav [temp]", ""]}, DEFS["RecordAudio"]) == {"audio": "rec.wav [temp]"}


def test_a_template_with_a_record_audio_node_keeps_its_required_input():
    """RecordAudio -> SaveAudio as the templates save it (the record button's value follows the recording's)."""
    nodes = [
        {"id": 1, "type": "RecordAudio", "mode": 0, "inputs": [], "widgets_values": ["", ""],
         "outputs": [{"name": "AUDIO", "type": "AUDIO", "links": [1]}]},
        {"id": 2, "type": "SaveAudio", "mode": 0, "widgets_values": ["audio/ComfyUI", None],
         "inputs": [{"name": "audio", "type": "AUDIO", "link": 1}], "outputs": []},
    ]
    prompt = ui_to_api({"nodes": nodes, "links": [[1, 1, 0, 2, 0, "AUDIO"]]}, DEFS)
    assert prompt["1"]["inputs"] == {"audio": ""}  # the server then says which file is missing; --set gives one
    assert prompt["2"]["inputs"] == {"audio": ["1", 0], "filename_prefix": "audio/ComfyUI"}


def test_the_helper_values_of_upload_and_3d_widgets_are_skipped():
    # LoadAudio: the audio player and the upload button store a null each; a later widget keeps its value
    spec = {"input": {"required": {"audio": [["voice.mp3"], {"audio_upload": True}]},
                      "optional": {"gain": ["FLOAT", {"default": 1.0}]}}}
    assert widget_values({"widgets_values": ["voice.mp3", None, None, 0.5]}, spec) == \
        {"audio": "voice.mp3", "gain": 0.5}
    # Load3D: three buttons sit between the model file and the rendered view
    values = ["toy.glb", "upload3dmodel", "uploadExtraResources", "clear", "", 1024, 768]
    assert widget_values({"widgets_values": values}, DEFS["Load3D"]) == \
        {"model_file": "toy.glb", "image": "", "width": 1024, "height": 768}
    # WebcamCapture: the capture button comes last
    assert widget_values({"widgets_values": ["", 640, 480, False, "capture"]}, DEFS["WebcamCapture"]) == \
        {"image": "", "width": 640, "height": 480, "capture_on_queue": False}


def test_the_widget_type_option_decides_over_the_declared_type():
    # a multi-type input (ComfyUI's MultiType) shows the widget its "widgetType" names
    spec = {"input": {"required": {"value": ["INT,FLOAT", {"widgetType": "INT", "default": 3}],
                                   "image": ["IMAGE", {}]}}}
    assert [name for name, _, _ in widget_inputs(spec)] == ["value"]
    assert widget_values({"widgets_values": [7]}, spec) == {"value": 7}
    assert widget_values({"widgets_values": []}, spec) == {"value": 3}


def test_a_custom_widget_type_counts_when_the_saved_node_marks_it_as_a_widget():
    spec = {"input": {"required": {"color": ["MY_COLOR_PICKER", {}], "n": ["INT", {}], "mask": ["MASK", {}]}}}
    plain = {"widgets_values": ["#ff0000", 3]}
    assert widget_values(plain, spec) == {"n": "#ff0000"}  # without the mark the frontend would have no widget
    marked = plain | {"inputs": [
        {"name": "color", "type": "MY_COLOR_PICKER", "widget": {"name": "color"}, "link": None},
        {"name": "mask", "type": "MASK", "link": None}]}
    assert widget_values(marked, spec) == {"color": "#ff0000", "n": 3}


def test_force_input_and_socket_types_are_never_widgets():
    spec = {"input": {"required": {"text": ["STRING", {"forceInput": True}], "audio": ["AUDIO", {}],
                                   "record": ["AUDIO_RECORD", {"forceInput": True}], "steps": ["INT", {}]}}}
    assert [name for name, _, _ in widget_inputs(spec)] == ["steps"]
