"""`python -m app`: open the RFT Workbench in a browser.

    python -m app [--port P] [--runs-dir DIR] [--data-dir DIR]
    python -m app --host 0.0.0.0 --auth USER:PASSWORD        # reachable from other machines: login required
    python -m app --share --auth USER:PASSWORD               # a public gradio.live link: login required

The server binds to 127.0.0.1 by default. Exposing it (any other --host, or --share) requires --auth, because the
rewards playground runs Python code that users type.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app", description="RFT Workbench: decide, reward, train, compare.")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                   help="port (default 7860, or $GRADIO_SERVER_PORT)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else requires --auth)")
    p.add_argument("--auth", metavar="USER:PASSWORD", default=os.environ.get("RFT_WORKBENCH_AUTH"),
                   help="require this login (needed with --host or --share; or $RFT_WORKBENCH_AUTH)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (requires --auth)")
    p.add_argument("--runs-dir", help="folder of run folders (default $RFT_WORKBENCH_RUNS or ./runs)")
    p.add_argument("--data-dir", help="folder for user rewards, preference pairs, uploads and exports "
                                      "(default $RFT_WORKBENCH_HOME or the runs folder's parent)")
    p.add_argument("--max-file-size", default="50mb", help="largest upload accepted (default 50mb)")
    p.add_argument("--inbrowser", action="store_true", help="open a browser tab")
    return p.parse_args(argv)


def check_exposure(args: argparse.Namespace) -> tuple[str, str] | None:
    """The (user, password) to require, or None for a local-only server; exits with a message when the server
    would be exposed without a login or the --auth value is malformed."""
    exposed = args.share or not _is_loopback(args.host)
    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            sys.exit("error: --auth must be USER:PASSWORD (both non-empty)")
        auth = (user, password)
    if exposed and auth is None:
        what = "--share" if args.share else f"--host {args.host}"
        sys.exit(f"error: {what} makes the workbench reachable from other machines, and its rewards playground runs "
                 "Python code that users type. Add --auth USER:PASSWORD to require a login.")
    return auth


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    auth = check_exposure(args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app.engine.core.folders import resolve_paths

    paths = resolve_paths(args.runs_dir, args.data_dir).ensure()
    os.environ["RFT_WORKBENCH_RUNS"] = str(paths.runs_dir)  # workers and notebooks started from here agree
    from app.ui.shell import build_demo, launch_kwargs

    demo = build_demo(paths=paths)
    demo.queue(default_concurrency_limit=1, max_size=64)
    print(f"RFT Workbench: runs in {paths.runs_dir}, user data in {paths.data_dir}", flush=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                auth_message="RFT Workbench: log in (set with --auth)." if auth else None,
                inbrowser=args.inbrowser, **launch_kwargs(paths, args.max_file_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
