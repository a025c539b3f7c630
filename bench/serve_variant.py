"""``hearth serve`` with another HTTP parser or event loop in the web server (the session host it
starts keeps Hearth's own), for ``bench_http_stack.py``.

    python bench/serve_variant.py --http h11|httptools --loop asyncio|uvloop -- serve ARGS...
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import hearth.server.serve
from hearth import cli, loops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", choices=["h11", "httptools"], required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], required=True)
    parser.add_argument("serve", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    config = hearth.server.serve.server_config

    def variant(*a: Any, **kw: Any) -> Any:
        built = config(*a, **kw)
        built.http = args.http
        return built

    hearth.server.serve.server_config = variant
    if args.loop == "asyncio":
        loops.loop_factory = lambda: None
    rest = args.serve[1:] if args.serve[:1] == ["--"] else args.serve
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main())
