"""``extproc`` command line: ``serve``, ``keys new NAME``, ``config check``, ``usage``, ``reload``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from . import logs
from .config import Admin, ConfigError, Settings
from .keys import hash_key, load_settings_and_keys, mint_key


def _serve(args: argparse.Namespace) -> int:
    from .bedrock.credentials import CredentialSource
    from .gateway import Gateway
    from .server import serve
    from .workers import check_settings

    # Until the server installs its own handler, SIGHUP (a reload) must not end a starting process.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logs.setup(args.log_level)
    settings, keys = load_settings_and_keys()
    check_settings(settings, args.workers)
    if args.workers > 1:
        return _supervise(args, settings)
    credentials = CredentialSource(refresh_interval=args.credential_refresh_seconds)
    worker = args.worker_index is not None
    gateway = Gateway(settings, keys, credentials, worker_index=args.worker_index)
    asyncio.run(serve(gateway, args.listen, None if worker else args.metrics_listen, args.grace_seconds,
                      args.drain_delay_seconds, reuse_port=worker))
    return 0


def _supervise(args: argparse.Namespace, settings: Settings) -> int:
    from .workers import Supervisor, supervise

    worker_argv = ["serve", "--listen", args.listen, "--grace-seconds", str(args.grace_seconds),
                   "--drain-delay-seconds", str(args.drain_delay_seconds),
                   "--credential-refresh-seconds", str(args.credential_refresh_seconds), "--log-level", args.log_level]
    supervisor = Supervisor(args.workers, worker_argv, args.grace_seconds, args.drain_delay_seconds)
    return asyncio.run(supervise(supervisor, settings, args.metrics_listen))


def _keys_new(args: argparse.Namespace) -> int:
    key = mint_key()
    print(f"New API key for consumer {args.name!r} (shown once, store it now):\n\n  {key}\n")
    print(f"Either add this line to the keys file (GATEWAY_KEYS_FILE):\n\n  {args.name}: {key}\n")
    print("or, to keep only its hash in the gateway configuration (GATEWAY_CONFIG):\n")
    print(f"  consumers:\n    {args.name}:\n      key_sha256: {hash_key(key)}")
    return 0


def _config_check(args: argparse.Namespace) -> int:
    settings, keys = load_settings_and_keys()
    config = settings.config
    print(f"configuration ok: {len(config.models.catalogue)} models (default {config.models.default}), "
          f"{len(config.policies)} policies, {len(config.consumers)} consumers in config, {len(keys)} keys; "
          f"upstream {settings.endpoint_url} (region {settings.region})")
    return 0


def _usage(args: argparse.Namespace) -> int:
    from .admin_client import run_usage

    return run_usage(args.admin, args.since, args.start, args.end, args.consumer, args.model, args.json)


def _reload(args: argparse.Namespace) -> int:
    from .admin_client import run_reload

    return run_reload(args.admin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="extproc", description="Bedrock gateway ext_proc service")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the ext_proc gRPC server")
    serve.add_argument("--listen", default=os.environ.get("EXTPROC_LISTEN", "127.0.0.1:50051"))
    serve.add_argument("--metrics-listen", default=os.environ.get("EXTPROC_METRICS_LISTEN", "127.0.0.1:9464"))
    serve.add_argument("--grace-seconds", type=float, default=float(os.environ.get("EXTPROC_GRACE_SECONDS", "30")),
                       help="on SIGTERM, how long in-flight requests may take to finish")
    serve.add_argument("--drain-delay-seconds", type=float,
                       default=float(os.environ.get("EXTPROC_DRAIN_DELAY_SECONDS", "2")),
                       help="on SIGTERM, keep serving this long after reporting NOT_SERVING")
    serve.add_argument("--credential-refresh-seconds", type=float,
                       default=float(os.environ.get("EXTPROC_CREDENTIAL_REFRESH_SECONDS", "60")))
    serve.add_argument("--log-level", default=os.environ.get("EXTPROC_LOG_LEVEL", "INFO"))
    serve.add_argument("--workers", type=int, default=int(os.environ.get("EXTPROC_WORKERS", "1")),
                       help="processes sharing the port (SO_REUSEPORT); more than one needs the Redis limits backend")
    serve.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
    serve.set_defaults(func=_serve)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    new = keys.add_parser("new", help="mint a key for a consumer and print it once")
    new.add_argument("name")
    new.set_defaults(func=_keys_new)

    config = commands.add_parser("config", help="configuration").add_subparsers(dest="config_command", required=True)
    check = config.add_parser("check", help="validate GATEWAY_CONFIG and GATEWAY_KEYS_FILE")
    check.set_defaults(func=_config_check)

    admin_help = "address of the admin API (admin.listen of the running gateway)"
    usage = commands.add_parser("usage", help="token usage and cost per consumer and model, from the admin API")
    window = usage.add_mutually_exclusive_group()
    window.add_argument("--since", help="the window ending at --end (or now): 30m, 1h, 2d (default 24h)")
    window.add_argument("--start", help="start of the window, ISO 8601 (UTC unless an offset is given)")
    usage.add_argument("--end", help="end of the window, ISO 8601 (default now)")
    usage.add_argument("--consumer", help="only this consumer")
    usage.add_argument("--model", help="only this model alias")
    usage.add_argument("--admin", default=Admin().listen, help=admin_help)
    usage.add_argument("--json", action="store_true", help="print JSON instead of a table")
    usage.set_defaults(func=_usage)

    reload = commands.add_parser("reload", help="make the running gateway re-read its configuration and keys")
    reload.add_argument("--admin", default=Admin().listen, help=admin_help)
    reload.set_defaults(func=_reload)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"extproc: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
