"""fmnist serve: the HTTP API and page, on one process or several workers."""

from __future__ import annotations

import argparse
import sys

from fmnist.cli.common import BARE_STATE_DICT, OOD_THRESHOLD_DEFAULT, Parser, Subcommands, say_layout
from fmnist.errors import FmnistError


def add_parsers(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """serve."""
    device = shared["device"]
    tta = shared["tta"]
    p = sub.add_parser(
        "serve", help="HTTP API and web page: classify uploaded images, with micro-batching", parents=[device, tta]
    )
    p.add_argument("model", help="a .pt checkpoint, a run directory, an exported model, or " + BARE_STATE_DICT)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 exposes it to the network (default: 127.0.0.1)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (default: 8000)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port, each with its own model copy and micro-batcher (default: 1)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads per model call (default: 1: batches "
        "are small, and the decoders and the HTTP loop need the other cores)",
    )
    p.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="API keys, one per line: POST /predict and GET /metrics "
        "then need one (Authorization: Bearer KEY or X-API-Key: KEY)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="an origin whose pages may call the API "
        "from a browser, e.g. https://shop.example (repeatable; default: none)",
    )
    add_limit_flags(p)
    p.add_argument(
        "--ood-threshold",
        type=float,
        metavar="SCORE",
        help=f"in-distribution score (0..1) below which a picture is answered as not clothing "
        f"(default: {OOD_THRESHOLD_DEFAULT})",
    )
    p.add_argument(
        "--forwarded-allow-ips",
        default="",
        metavar="IPS",
        help="comma-separated addresses or networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto name the client (rate limits, access log), or '*' for any (default: none: the "
        "client is whoever connected)",
    )
    p.add_argument("--no-access-log", action="store_true", help="no log line per request")
    p.set_defaults(func=cmd_serve, hangup="reload")  # SIGHUP, even one during start-up, reloads the model


def cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses

    from fmnist import trust
    from fmnist.device import select_device
    from fmnist.serve import server

    metrics_parent = server.claim_metrics_dir()  # first: before anything imports prometheus-client
    from fmnist.serve.limits import Limits

    proxies = server.trusted_proxies(args.forwarded_allow_ips) if args.forwarded_allow_ips else ""
    limits = Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)})
    if args.threads < 1 or args.workers < 1:
        raise FmnistError(f"--threads and --workers must be >= 1, got {args.threads} and {args.workers}")
    if not 0 <= args.port <= 65535:  # before the model loads; socket.bind would raise OverflowError
        raise FmnistError(f"--port must be 0-65535 (0: any free port), got {args.port}")
    trust.check_threshold(args.ood_threshold, "--ood-threshold")
    spec = server.Spec(
        args.model,
        str(select_device(args.device)),
        dataclasses.asdict(limits),
        args.api_key_file or "",
        tuple(args.cors_origin or ()),
        args.threads,
        args.tta,
        args.ood_threshold,
    )
    app = server.build_app(spec)  # here too with several workers: a bad model or key file is one line, before any
    say_layout(args.model, app.state.layout)
    sock = server.listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    warning = server.exposure_warning(host, keyed=bool(args.api_key_file))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    shown = f"[{host}]" if ":" in host else host
    workers = f", {args.workers} worker processes" if args.workers > 1 else ""
    print(
        f"fmnist serve: {app.state.model_header} on http://{shown}:{port}/{workers} (API: POST /predict, "
        "GET /healthz, GET /metrics); SIGHUP reloads the model; Ctrl-C or SIGTERM stops after the requests "
        "in flight",
        flush=True,
    )
    if metrics_parent is not None:
        print(f"fmnist serve: PROMETHEUS_MULTIPROC_DIR={metrics_parent}: {METRICS_NOTE[args.workers > 1]}", flush=True)
    if args.workers == 1:
        server.run(app, sock, not args.no_access_log, proxies)
    else:
        del app  # each worker loads its own
        server.run_workers(spec, sock, args.workers, not args.no_access_log, proxies, metrics_parent)
    return 0


METRICS_NOTE = {
    False: "not used: one process keeps its metrics in memory",
    True: "the workers' metrics go to a new directory in it, removed when the server stops",
}


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of serve's Limits, with its help and default, as add_config_flags does for Config."""
    import dataclasses

    from fmnist.serve.limits import Limits

    group = parser.add_argument_group("limits of each worker process (defaults shown)")
    for f in dataclasses.fields(Limits):
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            type=type(f.default),
            default=f.default,
            metavar=f.name.upper(),
            help=f"{f.metadata['help']} (default: {f.default:g})",
        )
