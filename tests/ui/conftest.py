"""A running `soraplan serve` (the demo model, on a free local port) shared by the UI tests."""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    pytest.importorskip("gradio")
    from soraplan.cli.main import build_parser
    from soraplan.cli.serve import build_server, launch

    argv = ["serve", "--port", str(free_port()), "--max_queue", "4", "--device", "cpu", "--fps", "8",
            "--output_dir", str(tmp_path_factory.mktemp("ui_out"))]
    args = build_parser().parse_args(argv)
    args.argv = argv
    app, generator = build_server(args)
    launch(app, args, block=False)
    yield f"http://{args.host}:{args.port}/", generator
    app.close()
