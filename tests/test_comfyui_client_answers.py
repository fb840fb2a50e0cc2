"""Untrusted answers: whatever a server sends, the client ends with one clear line and a documented status."""
import json

import pytest
from _comfyui_client_fakes import FakeComfy, run_client, ws_frame

from salt_core.comfyui_client import runner

OBJECT_INFO = {"Save": {"input": {"required": {"prefix": ["STRING", {}]}}, "output": []}}
UI_WORKFLOW = {"nodes": [{"id": 5, "type": "Save", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["x"]}],
               "links": []}
API_PROMPT = {"5": {"class_type": "Save", "inputs": {"prefix": "x"}}}
DONE = {"status_str": "success", "completed": True}


def answer(code, body, ctype="application/json", headers=()):
    return lambda h: h.reply(code, body if isinstance(body, bytes) else json.dumps(body).encode(), ctype, headers)


HTML_500 = answer(500, b"<html><h1>boom</h1></html>", "text/html")
CASES = {
    # name: (route, the answer, workflow, exit status, what the last line says)
    "object_info not JSON": (("GET", "/object_info"), answer(200, b"<html>hello</html>", "text/html"), UI_WORKFLOW, 2,
                             "GET /object_info: expected JSON, got text/html: <html>hello</html>"),
    "object_info a list": (("GET", "/object_info"), answer(200, [1, 2]), UI_WORKFLOW, 2,
                           "GET /object_info: expected a JSON object of node definitions, got list"),
    "object_info HTML 500": (("GET", "/object_info"), HTML_500, UI_WORKFLOW, 2,
                             "HTTP 500 Internal Server Error from GET /object_info (text/html, not JSON: "
                             "<html><h1>boom</h1></html>)"),
    "object_info redirect": (("GET", "/object_info"),
                             answer(302, b"", "text/plain", [("Location", "http://elsewhere.example/object_info")]),
                             UI_WORKFLOW, 2, "GET /object_info: the server answered with a redirect (302 to "
                                             "http://elsewhere.example/object_info); redirects are not followed, "
                                             "give --server the address ComfyUI itself listens on"),
    "prompt without prompt_id": (("POST", "/prompt"), answer(200, {"number": 1}), API_PROMPT, 1,
                                 "POST /prompt: expected a 'prompt_id' string (1 to 256 characters) in the answer, "
                                 "got none (keys: number)"),
    "prompt a list": (("POST", "/prompt"), answer(200, []), API_PROMPT, 1,
                      "POST /prompt: expected a JSON object with a 'prompt_id', got a list"),
    "prompt not JSON": (("POST", "/prompt"), answer(200, b"queued!", "text/plain"), API_PROMPT, 1,
                        "POST /prompt: expected JSON, got text/plain: queued!"),
    "prompt HTML 500": (("POST", "/prompt"), HTML_500, API_PROMPT, 1,
                        "the server refused the workflow: HTTP 500 Internal Server Error from POST /prompt "
                        "(text/html, not JSON: <html><h1>boom</h1></html>)"),
    "history entry a list": (("GET", "/history/p-1"), answer(200, {"p-1": []}), API_PROMPT, 1,
                             "GET /history/p-1: expected the prompt's entry to be an object, got a list"),
    "history outputs garbage": (("GET", "/history/p-1"), answer(200, {"p-1": {"outputs": "garbage", "status": DONE}}),
                                API_PROMPT, 1, "history: expected 'outputs' to be an object of nodes, got a string"),
    "history node outputs a list": (("GET", "/history/p-1"),
                                    answer(200, {"p-1": {"outputs": {"5": [1, 2]}, "status": DONE}}), API_PROMPT, 1,
                                    "history: expected the outputs of node 5 to be an object, got a list"),
    "history filename a number": (("GET", "/history/p-1"), answer(200, {"p-1": {"outputs": {"5": {"images": [
        {"filename": 7, "subfolder": "", "type": "output"}]}}, "status": DONE}}), API_PROMPT, 1,
        "history: outputs[5][images][0]: expected strings for filename, got int"),
    "view redirect": (("GET", "/view"), answer(301, b"", "text/plain", [("Location", "http://elsewhere.example/x")]),
                      API_PROMPT, 1, "0 outputs saved, 0 refused as unsafe, 1 not downloaded"),
}


@pytest.mark.parametrize("route, reply, workflow, status, last", CASES.values(), ids=CASES.keys())
def test_a_bad_answer_ends_with_one_clear_line(tmp_path, capsys, route, reply, workflow, status, last):
    server = FakeComfy(object_info=OBJECT_INFO, routes={route: reply})
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(workflow))
    try:
        got = runner.main(["--server", server.url, str(wf), "--out", str(tmp_path / "out"), "--timeout", "20"])
    finally:
        server.close()
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert got == status, lines
    assert lines[-1].endswith(last), lines
    assert "Traceback" not in captured.out + captured.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.mp4"))


def test_a_redirected_download_names_where_it_pointed(tmp_path):
    server = FakeComfy(routes={("GET", "/view"): answer(302, b"", "text/plain", [("Location", "http://elsewhere/x")])})
    status, saved, lines, _ = run_client(server, API_PROMPT, tmp_path)
    assert (status, saved) == (1, [])
    assert ("output x_00001_.mp4 of node 5 could not be downloaded: GET /view: the server answered with a redirect "
            "(302 to http://elsewhere/x); redirects are not followed") in "\n".join(lines)


@pytest.mark.parametrize("message, expected", [
    (b"not json at all", "websocket: expected a JSON message, got not json at all"),
    (b"[1, 2]", "websocket: expected a JSON object with a 'type', got a list"),
])
def test_a_websocket_message_that_is_not_a_comfyui_event_fails_the_run(tmp_path, message, expected):
    def behave(h, fake):
        fake.queued.wait(5)
        h.wfile.write(ws_frame(message))
        fake.stop.wait(10)
    status, _, lines, _ = run_client(FakeComfy(ws=behave), API_PROMPT, tmp_path)
    assert status == 1 and lines[-1] == expected, lines


def test_a_refused_websocket_falls_back_to_polling_history(tmp_path):
    server = FakeComfy(routes={("GET", "/ws"): answer(404, {"error": "no websocket here"})})
    status, saved, lines, _ = run_client(server, API_PROMPT, tmp_path)
    assert status == 0 and saved == [str(tmp_path / "out" / "x_00001_.mp4")], lines
    assert lines[0] == "no websocket (websocket handshake refused: HTTP/1.1 404 Not Found); polling /history instead"


def test_terminal_escapes_in_server_text_are_not_printed(tmp_path):
    def behave(h, fake):
        fake.queued.wait(5)
        h.wfile.write(ws_frame(json.dumps({"type": "execution_error", "data": {
            "prompt_id": "p-1", "node_id": "3\x1b[2J", "node_type": "Sampler", "exception_type": "ValueError",
            "exception_message": "bad\x1b]0;owned\x07 value", "traceback": ["line\x1b[31m"]}}).encode()))
        fake.stop.wait(10)
    status, _, lines, _ = run_client(FakeComfy(ws=behave), API_PROMPT, tmp_path)
    text = "\n".join(lines)
    assert status == 1 and "\x1b" not in text and "\x07" not in text
    assert "ValueError: bad\N{REPLACEMENT CHARACTER}]0;owned\N{REPLACEMENT CHARACTER} value" in text


def test_malformed_node_errors_are_still_shown(tmp_path):
    from salt_core.comfyui_client.answers import format_node_errors
    assert format_node_errors({"error": "bad", "node_errors": {"3": "oops", "4": {"errors": ["plain"]}}}) == \
        "error: bad\nnode 4 (?): plain"
    assert format_node_errors([1, 2]) == "[1, 2]"
