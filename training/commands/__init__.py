"""One module per trainer command; each exposes run(cfg, command) -> dict."""
