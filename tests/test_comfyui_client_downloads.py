"""Where the client writes a server's outputs: only inside --out, never over a file, atomically, capped."""
import json
import os

import pytest
from _comfyui_client_fakes import FakeComfy, RawServer, read_request, run_client

from salt_core.comfyui_client import runner

PROMPT = {"5": {"class_type": "Save", "inputs": {"prefix": "x"}}}
GOOD = {"filename": "good.mp4", "subfolder": "", "type": "output"}


def run(server, out, **kw):
    return run_client(server, PROMPT, out, **kw)[:3]


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


@pytest.fixture
def serve():
    servers = []

    def start(**kw):
        servers.append(FakeComfy(**kw))
        return servers[-1]
    yield start
    for s in servers:
        s.close()


UNSAFE = {
    "parent subfolder": ({"filename": "x.mp4", "subfolder": "../../escaped"}, "'..' is not a plain name"),
    "absolute subfolder": ({"filename": "x.mp4", "subfolder": "{outside}"}, "'' is not a plain name"),
    "parent in filename": ({"filename": "../escaped.mp4", "subfolder": ""}, "folder part"),
    "absolute filename": ({"filename": "{outside}.mp4", "subfolder": ""}, "folder part"),
    "dotdot filename": ({"filename": "..", "subfolder": "a"}, "'..' is not a plain name"),
    "NUL byte": ({"filename": "x.mp4\x00.txt", "subfolder": ""}, "NUL or control character"),
    "drive letter": ({"filename": "x.mp4", "subfolder": "C:\\Windows"}, "drive letter"),
    "backslash parent": ({"filename": "x.mp4", "subfolder": "a\\..\\..\\..\\escaped"}, "'..' is not a plain name"),
    "backslash filename": ({"filename": "..\\escaped.mp4", "subfolder": ""}, "folder part"),
    "device name": ({"filename": "NUL.txt", "subfolder": ""}, "device name"),
    "odd type": ({"filename": "x.mp4", "subfolder": "", "type": "../../etc"}, "not one of output, temp, input"),
}


@pytest.mark.parametrize("entry, reason", UNSAFE.values(), ids=UNSAFE.keys())
def test_an_unsafe_output_entry_is_refused_named_and_nothing_is_written_for_it(serve, tmp_path, entry, reason):
    out = tmp_path / "a" / "b" / "out"
    entry = {k: v.replace("{outside}", str(tmp_path / "escaped")) for k, v in entry.items()}  # stays in tmp_path
    server = serve(outputs={"5": {"images": [{"type": "output"} | entry, GOOD]}})
    status, saved, lines = run(server, out)
    assert status == 4, lines
    assert files_under(tmp_path) == ["a/b/out/good.mp4"]  # the safe output still came; nothing else anywhere
    assert saved == [str(out / "good.mp4")]
    [refusal] = [line for line in lines if line.startswith("refused")]
    assert "node 5" in refusal and reason in refusal and "nothing was written" in refusal
    assert len(server.views) == 1  # the unsafe one was not even fetched


def test_a_symlink_inside_out_cannot_lead_outside(serve, tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    server = serve(outputs={"5": {"images": [{"filename": "x.mp4", "subfolder": "link/deeper", "type": "output"}]}})
    status, saved, lines = run(server, out)
    assert (status, saved) == (4, [])
    assert list(outside.iterdir()) == [] and "through a symlink" in "\n".join(lines)


def test_safe_names_land_inside_out_with_their_subfolders(tmp_path):
    from salt_core.comfyui_client.downloads import safe_target
    from salt_core.comfyui_client.errors import UnsafeAnswer

    assert safe_target(str(tmp_path), {"filename": "v.mp4", "subfolder": "salt/run 1", "type": "output"}) == \
        str(tmp_path / "salt" / "run 1" / "v.mp4")
    # ComfyUI on Windows names subfolders with backslashes
    assert safe_target(str(tmp_path), {"filename": "v.mp4", "subfolder": "salt\\a", "type": "temp"}) == \
        str(tmp_path / "salt" / "a" / "v.mp4")
    with pytest.raises(UnsafeAnswer, match="subfolder is refused"):
        safe_target(str(tmp_path), {"filename": "v.mp4", "subfolder": "a//b", "type": "output"})


def test_an_existing_file_is_kept_and_the_new_one_gets_a_free_name(serve, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x_00001_.mp4").write_bytes(b"OLD")
    (tmp_path / "out" / "x_00001_-2.mp4").write_bytes(b"OLDER")
    status, saved, lines = run(serve(), tmp_path)
    assert status == 0, lines
    assert (tmp_path / "out" / "x_00001_.mp4").read_bytes() == b"OLD"
    assert (tmp_path / "out" / "x_00001_-2.mp4").read_bytes() == b"OLDER"
    assert saved == [str(tmp_path / "out" / "x_00001_-3.mp4")]
    assert (tmp_path / "out" / "x_00001_-3.mp4").read_bytes() == b"MP4 BYTES"
    assert "x_00001_.mp4 existed and was kept" in "\n".join(lines)


def test_the_same_file_listed_twice_is_downloaded_once(serve, tmp_path):
    item = {"filename": "x.mp4", "subfolder": "", "type": "output"}
    status, saved, _ = run(serve(outputs={"5": {"images": [item], "gifs": [item]}}), tmp_path)
    assert status == 0 and saved == [str(tmp_path / "x.mp4")] and files_under(tmp_path) == ["x.mp4"]


def short_body(conn, stop):
    """/view announces 1000 bytes, sends 10 and hangs up; every other route answers like ComfyUI."""
    head = read_request(conn).decode()
    path = head.split(" ")[1]
    if path.startswith("/view"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        return
    body = {"/prompt": {"prompt_id": "p-1"},
            "/history/p-1": {"p-1": {"outputs": {"5": {"images": [GOOD]}},
                                     "status": {"status_str": "success", "completed": True}}}}.get(path)
    data = json.dumps(body).encode()
    conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (200 if body else 404, len(data)) + data)


def test_a_download_cut_short_leaves_no_file_and_no_temporary(tmp_path):
    status, saved, lines = run(RawServer(short_body), tmp_path / "out")
    assert (status, saved) == (1, []), lines
    assert files_under(tmp_path) == []  # neither good.mp4 nor a .part file
    assert "good.mp4" in "\n".join(lines)


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "no-length"])
def test_a_download_over_the_cap_is_refused(serve, tmp_path, announced):
    def view(h):
        if announced:
            return h.reply(200, b"x" * 100, "video/mp4")
        h.send_response(200)  # no Content-Length: the body ends when the connection closes
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(b"x" * 100)
        h.close_connection = True
    server = serve(routes={("GET", "/view"): view}, outputs={"5": {"images": [GOOD]}})
    status, saved, lines = run(server, tmp_path, max_file_bytes=50)
    assert (status, saved) == (4, []), lines
    assert files_under(tmp_path) == []
    assert "more than the cap of 50 bytes" in "\n".join(lines)


def test_the_cli_takes_the_cap_in_mib(serve, tmp_path):
    server = serve(view_body=b"x" * (2 << 20))
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(PROMPT))
    out = tmp_path / "out"
    assert runner.main(["--server", server.url, str(wf), "--out", str(out), "--max-file-mb", "1"]) == 4
    assert not out.exists() or files_under(out) == []
    assert runner.main(["--server", server.url, str(wf), "--out", str(out), "--max-file-mb", "3"]) == 0
    assert os.path.getsize(out / "out" / "x_00001_.mp4") == 2 << 20
