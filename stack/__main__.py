"""`make stack`: start the stack in the foreground; Ctrl-C (or SIGTERM) stops all of it.

python -m stack [--workers N] [--server-port P] [--emulator-port P] [--fresh] [-- emulator args]
"""

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from stack.lifecycle import DEFAULT_API_LIMIT, REPO, Stack, StackConfig, StackError

log = logging.getLogger("stack")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same way out as Ctrl-C: through the `with` block, which stops every child.
    raise KeyboardInterrupt


def parse(argv: list[str] | None) -> StackConfig:
    parser = argparse.ArgumentParser(
        prog="python -m stack",
        description="PostgreSQL + Prefect server + emulator + deployments + N process workers, in the "
        "foreground. Arguments after `--` go to the emulator (python -m splendor_emulator --help).",
    )
    parser.add_argument("--root", type=Path, default=REPO / "var" / "stack", help="state directory")
    parser.add_argument("--workers", type=int, default=2, help="process workers (default 2)")
    parser.add_argument("--server-port", type=int, default=4200, help="Prefect server; 0 = any free port")
    parser.add_argument("--emulator-port", type=int, default=8765, help="emulator; 0 = any free port")
    parser.add_argument("--pg-port", type=int, default=5432, help="PostgreSQL port (names the socket)")
    parser.add_argument("--pg-tcp", action="store_true", help="PostgreSQL also on 127.0.0.1 (trust!)")
    parser.add_argument("--worker-poll-seconds", type=float, default=10.0, help="worker polling interval")
    parser.add_argument("--heartbeat-seconds", type=int, default=30, help="flow-run heartbeats (>= 30)")
    parser.add_argument("--zombie-within", type=float, default=None, help="override the zombie window (s)")
    parser.add_argument(
        "--api-limit",
        type=int,
        default=DEFAULT_API_LIMIT,
        help=f"slots of the splendor-api-<tenant> global concurrency limit, created when missing "
        f"(default {DEFAULT_API_LIMIT}; a negative value creates none)",
    )
    parser.add_argument(
        "--notify-url",
        default=None,
        help="where the notification automations post (the splendor-notify webhook block; "
        "default $SPLENDOR_NOTIFY_URL, else an existing block, else those automations are skipped)",
    )
    parser.add_argument("--no-ui", action="store_true", help="disable the Prefect UI")
    parser.add_argument("--fresh", action="store_true", help="wipe --root first (database included)")
    parser.add_argument("emulator_args", nargs="*", help="after `--`: extra emulator arguments")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return StackConfig(
        root=args.root,
        workers=args.workers,
        server_port=args.server_port,
        emulator_port=args.emulator_port,
        pg_port=args.pg_port,
        pg_tcp=args.pg_tcp,
        worker_poll_seconds=args.worker_poll_seconds,
        heartbeat_seconds=args.heartbeat_seconds,
        zombie_within_seconds=args.zombie_within,
        notify_url=args.notify_url,
        api_limit=args.api_limit if args.api_limit >= 0 else None,
        ui=not args.no_ui,
        fresh=args.fresh,
        emulator_args=tuple(args.emulator_args),
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s stack: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = parse(argv)
        stack = Stack(config)
    except ValueError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 2
    # Both explicitly: started in the background by a non-interactive shell, Python inherits an ignored
    # SIGINT (so Ctrl-C or `kill -INT` would do nothing) and passes it on to every child.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with stack:
            print(stack.summary(), flush=True)
            while True:
                dead = stack.check_alive()
                if dead is not None:
                    # A half-dead stack misleads more than a stopped one: stop everything, say why.
                    log.error("%s exited %s; stopping the stack. Its log:\n%s", dead.name,
                              dead.popen.returncode, dead.tail())  # fmt: skip
                    return 1
                time.sleep(1)
    except KeyboardInterrupt:
        log.info("stopped")
        return 0
    except StackError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
