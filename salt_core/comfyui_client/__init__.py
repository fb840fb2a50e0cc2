"""A client for a running ComfyUI server: run saved workflows headlessly, convert UI workflows to API prompts.

Standard library only and independent of the rest of salt_core (no torch, no model code): it talks HTTP and
websocket to a server and treats every answer of that server as untrusted.

    python -m salt_core.comfyui_client --server http://127.0.0.1:8188 workflow.json --out videos/
"""
