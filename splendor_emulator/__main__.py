"""`python -m splendor_emulator`: run the Splendor API emulator in the foreground."""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from splendor_emulator.config import EmulatorConfig, _default_api_keys, _default_tokens
from splendor_emulator.faults import load_fault_file, parse_fault_spec
from splendor_emulator.server import serve

DEFAULT_BUCKET_ROOT = Path("var/emulator/buckets")

EPILOG = """\
fault spec (--fault, repeatable): KIND[:ROUTE][:key=value]...
  KIND   unavailable | bad_gateway | server_error | latency | hang | drop_after |
         run_fail | run_incomplete | run_zero_records | ingest_fail
  ROUTE  "*" (default), "METHOD /route/template", a bare template, or a glob such as "POST /v1/admin/*"
  keys   count=N  rate=0..1  tenant=ID  retry_after=SECONDS|http-date  retry_after_seconds=S
         seconds=S (latency, hang)  source_key=KEY  times=N (run_incomplete)  error_message=TEXT
examples:
  --fault 'unavailable:POST /v1/admin/airbyte-sources:count=3:retry_after=1'
  --fault 'drop_after:POST /v1/admin/airbyte-sources/{source_id}/sync:count=1'
  --fault 'run_incomplete:*:source_key=stripe:times=2'
default tokens: acme-admin-token, acme-member-token, globex-user-token, spltk.v1.YWNtZQ.local-demo-key
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m splendor_emulator",
        description="Local emulator of the Splendor admin API (see docs/emulator.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to listen on (default: 8765; 0 = any free port)"
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE.sqlite",
        help="SQLite file that keeps state across restarts (default: memory)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE.json",
        help="EmulatorConfig as JSON: tenants, tokens, providers, timings",
    )
    parser.add_argument(
        "--faults",
        type=Path,
        metavar="FILE.json",
        help="fault specs active from the start: a list or {'faults': [...]}",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="add one fault (repeatable; syntax below)",
    )
    parser.add_argument(
        "--sync-seconds",
        type=float,
        metavar="F",
        help="duration of every connector sync attempt, overriding providers",
    )
    parser.add_argument(
        "--ingest-seconds", type=float, metavar="F", help="seconds an ingest run spends in each state"
    )
    parser.add_argument("--latency-ms", type=float, metavar="F", help="latency added to every API request")
    parser.add_argument(
        "--records-per-stream", type=int, metavar="N", help="records each stream yields per run"
    )
    parser.add_argument(
        "--bucket-root",
        type=Path,
        metavar="DIR",
        help=f"folder holding the local buckets (default: beside --state, else {DEFAULT_BUCKET_ROOT})",
    )
    parser.add_argument("--upload-single-max-bytes", type=int, metavar="N", help="largest single-mode upload")
    parser.add_argument(
        "--upload-part-size-bytes", type=int, metavar="N", help="part size of multipart uploads"
    )
    parser.add_argument(
        "--no-list-runs",
        dest="list_runs_route",
        action="store_false",
        default=None,
        help="answer 404 on the (assumed) list-runs route, as an API without it would",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level",
    )
    return parser


def load_config(args: argparse.Namespace) -> EmulatorConfig:
    data: dict[str, Any] = json.loads(args.config.read_text()) if args.config else {}
    overrides = {
        "sync_seconds": args.sync_seconds,
        "ingest_seconds": args.ingest_seconds,
        "latency_ms": args.latency_ms,
        "records_per_stream": args.records_per_stream,
        "bucket_root": args.bucket_root,
        "upload_single_max_bytes": args.upload_single_max_bytes,
        "upload_part_size_bytes": args.upload_part_size_bytes,
        "list_runs_route": args.list_runs_route,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    faults = load_fault_file(args.faults) if args.faults else []
    faults += [parse_fault_spec(text) for text in args.fault]
    data["faults"] = list(data.get("faults", [])) + faults
    if data.get("bucket_root") is None and args.state is None:
        data["bucket_root"] = DEFAULT_BUCKET_ROOT
    return EmulatorConfig.model_validate(data)


def shown_tokens(config: EmulatorConfig) -> str:
    """The seed tokens are public demo values worth printing; tokens from a --config file may be real
    (or canaries a test scans logs for), so they are only counted."""
    seed = {t.token for t in _default_tokens()} | {k.token for k in _default_api_keys()}
    tokens = [t.token for t in config.tokens] + [k.token for k in config.api_keys]
    shown = [t for t in tokens if t in seed]
    hidden = len(tokens) - len(shown)
    return ", ".join(shown) + (f" (+{hidden} from --config, not shown)" if hidden else "")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args)
    except (ValidationError, ValueError, OSError) as exc:
        print(f"splendor_emulator: bad configuration: {exc}", file=sys.stderr)
        return 2
    tokens = shown_tokens(config)
    print(
        f"Splendor emulator on http://{args.host}:{args.port}  state={args.state or 'memory'}",
        f" tokens: {tokens}",
        file=sys.stderr,
    )
    serve(config, args.state, args.host, args.port, args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
