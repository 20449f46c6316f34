"""``extproc`` command line: ``serve``, ``keys new NAME``, ``config check``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from . import logs
from .config import ConfigError, load_settings
from .keys import KeyRing, hash_key, mint_key


def _serve(args: argparse.Namespace) -> int:
    from .bedrock.credentials import CredentialSource
    from .gateway import Gateway
    from .server import serve

    logs.setup(args.log_level)
    settings = load_settings()
    keys = KeyRing.build(settings.config, settings.keys_file)
    credentials = CredentialSource(refresh_interval=args.credential_refresh_seconds)
    gateway = Gateway(settings, keys, credentials)
    asyncio.run(serve(gateway, args.listen, args.metrics_listen, args.grace_seconds, args.drain_delay_seconds))
    return 0


def _keys_new(args: argparse.Namespace) -> int:
    key = mint_key()
    print(f"New API key for consumer {args.name!r} (shown once, store it now):\n\n  {key}\n")
    print(f"Either add this line to the keys file (GATEWAY_KEYS_FILE):\n\n  {args.name}: {key}\n")
    print("or, to keep only its hash in the gateway configuration (GATEWAY_CONFIG):\n")
    print(f"  consumers:\n    {args.name}:\n      key_sha256: {hash_key(key)}")
    return 0


def _config_check(args: argparse.Namespace) -> int:
    settings = load_settings()
    keys = KeyRing.build(settings.config, settings.keys_file)
    config = settings.config
    print(f"configuration ok: {len(config.models.catalogue)} models (default {config.models.default}), "
          f"{len(config.policies)} policies, {len(config.consumers)} consumers in config, {len(keys)} keys; "
          f"upstream {settings.endpoint_url} (region {settings.region})")
    return 0


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
    serve.set_defaults(func=_serve)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    new = keys.add_parser("new", help="mint a key for a consumer and print it once")
    new.add_argument("name")
    new.set_defaults(func=_keys_new)

    config = commands.add_parser("config", help="configuration").add_subparsers(dest="config_command", required=True)
    check = config.add_parser("check", help="validate GATEWAY_CONFIG and GATEWAY_KEYS_FILE")
    check.set_defaults(func=_config_check)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"extproc: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
