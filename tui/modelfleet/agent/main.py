"""``modelfleet-agent``: serve one model on an edge node, or check a release before switching to it.

::

    modelfleet-agent --config /opt/modelfleet/etc/agent-credit-risk.toml
    modelfleet-agent --release DIR --address 127.0.10.1 --port 8080     # no config file (tests, benchmarks)
    modelfleet-agent check-release DIR [--json]                          # load, warm, probe; exit 0 ok / 1 refused
    modelfleet-agent prime [MODULE ...]                                  # byte-compile what the agent loads

Reload the release ``current`` points to: ``kill -HUP <pid>`` or ``POST /admin/reload`` with the admin token.
Exit codes: 0 ok, 1 the release check failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from modelfleet import __version__
from modelfleet.core.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, ConfigError, ModelfleetError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _serve_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="modelfleet-agent", description="Serve one model version over HTTP (MLflow scoring "
                "protocol) with health, metrics, drift counts and zero-downtime reload.",
                epilog="subcommands: modelfleet-agent check-release DIR [--json]; modelfleet-agent prime [MODULE ...]")
    p.add_argument("--version", action="version", version=f"modelfleet-agent {__version__}")
    p.add_argument("--config", type=Path, help="agent TOML file (see docs/agent.md)")
    p.add_argument("--release", type=Path, help="release directory or current symlink (overrides [model] current)")
    p.add_argument("--address", help="bind address (overrides [server] address)")
    p.add_argument("--port", type=int, help="port (overrides [server] port)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (overrides [log] level)")
    return p


def _check_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="modelfleet-agent check-release",
                description="Load a release, warm it, run its probe and print the verdict (exit 0 ok, 1 refused).")
    p.add_argument("release", type=Path, help="release directory")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    return p


def _setup_logging(path: Path | None, level: str) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    handler: logging.Handler
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root = logging.getLogger("modelfleet")
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False


def check_release(argv: Sequence[str]) -> int:
    args = _check_parser().parse_args(list(argv))
    from modelfleet.agent.release import load_release, warm_and_probe

    started = time.perf_counter()
    out: dict[str, object] = {"release": str(args.release)}
    try:
        release = load_release(args.release)
        out.update(model=release.name, version=release.version, digest=release.digest, flavor=release.flavor)
        verdict = warm_and_probe(release)
        out.update(ok=True, verdict=verdict, profile=release.profile is not None,
                   profile_note=release.profile_error)
        code = EXIT_OK
    except ModelfleetError as exc:
        out.update(ok=False, verdict=str(exc))
        code = EXIT_CHECK_FAILED
    out["seconds"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(out))
    else:
        state = "ok" if out["ok"] else "REFUSED"
        print(f"{state}: {out.get('model', '?')} version {out.get('version', '?')} at {args.release}: "
              f"{out['verdict']}")
    return code


def _resume_gc() -> None:
    """After the startup load: what was allocated so far (libraries, the first release) leaves the collector's
    generations (``gc.freeze``) and collection resumes for what serving allocates; the first reload that
    replaces that release thaws it again (Agent.reload)."""
    gc.freeze()
    gc.enable()


def serve(argv: Sequence[str]) -> int:
    # Starting allocates about a million long-lived objects (numpy, pandas, scikit-learn and the model); the
    # cyclic collector would walk them again and again for nothing: ~0.15 of the ~1.3 CPU-seconds a cold start
    # costs (bench/agent_cold_start.py). Collection resumes once the first load has ended.
    gc.disable()
    args = _serve_parser().parse_args(list(argv))
    from modelfleet.agent.config import AgentConfig, load_config

    cfg = load_config(args.config) if args.config else AgentConfig(source="command line")
    if args.address:
        cfg.address = args.address
    if args.port is not None:
        cfg.port = args.port
    if args.release:
        cfg.current = args.release
    if args.log_level:
        cfg.log_level = args.log_level
    cfg.validate()
    if cfg.current is None:
        raise ConfigError(f"{cfg.source}: no release to serve", hint="set [model] current or pass --release DIR")
    _setup_logging(cfg.log_path, cfg.log_level)

    import uvicorn

    from modelfleet.agent.app import Agent

    agent = Agent(cfg)
    agent.after_first_load = _resume_gc
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    config = uvicorn.Config(
        agent, host=cfg.address, port=cfg.port, loop=loop, http=http, lifespan="on", access_log=False,
        log_config=None, log_level="warning", server_header=False, date_header=False,
        timeout_keep_alive=30, backlog=1024,
    )
    logging.getLogger("modelfleet.agent").info(
        "modelfleet-agent %s listening on %s:%d (%s/%s), release %s", __version__, cfg.address, cfg.port,
        http, loop, cfg.current)
    server = uvicorn.Server(config)
    server.run()
    return EXIT_OK if server.started else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "check-release":
            return check_release(argv[1:])
        if argv and argv[0] == "prime":
            from modelfleet.agent.prime import main as prime_main

            return prime_main(argv[1:])
        return serve(argv)
    except ModelfleetError as exc:
        sys.stderr.write(f"modelfleet-agent: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"  fix: {exc.hint}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
