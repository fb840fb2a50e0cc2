"""--timeout bounds the whole run, whatever the server does; oversized answers are refused from their headers.

The servers here misbehave on purpose: they trickle a byte every 0.2 s (each read alone is quick, so only a
deadline on every read ends it), or announce sizes no client should read. Timeouts are 1.5 s; the margin
allowed past them is generous (2 s) because the test machine is shared.
"""
import json
import struct

import pytest
from _comfyui_client_fakes import FakeComfy, RawServer, read_request, run_client, trickle, ws_frame

API_PROMPT = {"5": {"class_type": "Save", "inputs": {"prefix": "x"}}}
UI_WORKFLOW = {"nodes": [{"id": 5, "type": "Save", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["x"]}],
               "links": []}
TIMEOUT, MARGIN = 1.5, 2.0


TRICKLES = {
    "status line": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    "json body": None,  # headers at once, then the body a byte at a time
}


@pytest.mark.parametrize("where", TRICKLES)
def test_a_trickling_http_server_does_not_hold_the_client_past_the_timeout(where):
    def behave(conn, stop):
        read_request(conn)
        if where == "json body":
            body = json.dumps({"Save": {"input": {"required": {"prefix": ["STRING", {}]}}}}).encode() * 100
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            trickle(conn, stop, body, 0.2)
        else:
            trickle(conn, stop, TRICKLES[where], 0.2)
    status, _, lines, took = run_client(RawServer(behave), UI_WORKFLOW, timeout=TIMEOUT)  # GET /object_info first
    assert status == 3, lines
    assert took < TIMEOUT + MARGIN
    assert lines == ["the run was not finished within the timeout (1.5 s)"]


def serve_ws(behave):
    """A fake that queues normally but runs behave(handler, fake) on the websocket."""
    return FakeComfy(ws=behave)


def test_a_trickling_websocket_does_not_hold_the_client_past_the_timeout():
    def behave(h, fake):
        fake.queued.wait(5)
        h.wfile.write(bytes([0x81, 126]) + struct.pack("!H", 1000))  # a 1000-byte text frame, sent slowly
        for _ in range(1000):
            if fake.stop.wait(0.2):
                return
            h.wfile.write(b"x")
    server = serve_ws(behave)
    status, _, lines, took = run_client(server, API_PROMPT, timeout=TIMEOUT)
    assert status == 3, lines
    assert took < TIMEOUT + MARGIN
    assert lines[-1] == "the run was not finished within the timeout (1.5 s)"


def test_a_websocket_frame_claiming_2_to_the_62_bytes_is_refused_at_once():
    def behave(h, fake):
        fake.queued.wait(5)
        h.wfile.write(bytes([0x82, 127]) + struct.pack("!Q", 1 << 62))
        fake.stop.wait(10)  # and then nothing: a client that tried to read it would wait for the timeout
    server = serve_ws(behave)
    status, _, lines, _ = run_client(server, API_PROMPT, timeout=10)
    assert status == 4, lines
    assert lines[-1] == (f"websocket: a frame header claims {1 << 62} bytes, more than the 64 MiB cap of "
                         "websocket messages; refused unread")


def test_a_fragmented_websocket_message_over_the_cap_is_refused(monkeypatch):
    from salt_core.comfyui_client import websocket
    monkeypatch.setattr(websocket, "MAX_MESSAGE_BYTES", 1000)

    def behave(h, fake):
        fake.queued.wait(5)
        for _ in range(3):
            h.wfile.write(ws_frame(b"x" * 400, opcode=0x1 if _ == 0 else 0x0, fin=False))
        fake.stop.wait(10)
    server = serve_ws(behave)
    status, _, lines, _ = run_client(server, API_PROMPT, timeout=10)
    assert status == 4 and "fragmented message longer than the 1000 bytes cap" in lines[-1], lines


def test_a_json_answer_announcing_a_terabyte_is_refused_before_reading():
    def object_info(h):
        h.send_response(200)
        h.send_header("Content-Length", str(1 << 40))
        h.end_headers()
        fake.stop.wait(10)  # the body never comes
    fake = FakeComfy(routes={("GET", "/object_info"): object_info})
    status, _, lines, _ = run_client(fake, UI_WORKFLOW, timeout=10)
    assert status == 4, lines
    assert lines == [f"GET /object_info: the answer announces {1 << 40} bytes, more than the 64 MiB cap of JSON "
                     "answers; nothing was read"]


def test_a_json_answer_without_a_length_is_read_only_up_to_the_cap(monkeypatch):
    from salt_core.comfyui_client import client
    monkeypatch.setattr(client, "MAX_JSON_BYTES", 1000)

    def object_info(h):
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(json.dumps({"Save": {"input": {}}, "pad": "x" * 5000}).encode())
        h.close_connection = True
    fake = FakeComfy(routes={("GET", "/object_info"): object_info})
    status, _, lines, _ = run_client(fake, UI_WORKFLOW, timeout=10)
    assert status == 4, lines
    assert lines == ["GET /object_info: the answer is larger than the 1000 bytes cap of JSON answers"]
