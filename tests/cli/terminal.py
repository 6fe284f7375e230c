"""Run a command on a pseudo-terminal and read back what its screen shows.

`Screen` replays the bytes a program wrote the way a terminal does for the control sequences rich
uses (carriage return, line feed, cursor up, erase line, colours), keeping every line that scrolled
off as scrollback. What is left once the program ends is what an operator scrolls through.

Also a script, to measure a command by hand:
    python -m tests.cli.terminal [--rows 40 --cols 120] -- splendor-flows apply FILE
"""

import argparse
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from fcntl import ioctl

# CSI (ESC [ params final), OSC (ESC ] ... BEL or ESC \), and two-byte escapes (ESC x).
_CONTROL = re.compile(r"\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


@dataclass
class Screen:
    cols: int
    lines: list[list[str]] = field(default_factory=lambda: [[]])
    row: int = 0
    col: int = 0
    # Deepest cursor-up seen: how far back a redraw reached, the height of a live view.
    max_cursor_up: int = 0

    def feed(self, text: str) -> None:
        position = 0
        for match in _CONTROL.finditer(text):
            self._write(text[position : match.start()])
            self._control(match.group(1), match.group(2))
            position = match.end()
        self._write(text[position:])

    def _control(self, params: str | None, final: str | None) -> None:
        if final == "A":  # cursor up
            self.row = max(0, self.row - int(params or 1))
            self.max_cursor_up = max(self.max_cursor_up, len(self.lines) - 1 - self.row)
        elif final == "K":  # erase in line: 0 to the end, 1 to the cursor, 2 the whole line
            line = self.lines[self.row]
            if params in ("", "0"):
                del line[self.col :]
            elif params == "2":
                line.clear()
            elif params == "1":
                line[: self.col + 1] = [" "] * min(len(line), self.col + 1)

    def _write(self, text: str) -> None:
        for char in text:
            if char == "\n":
                self.row += 1
                if self.row == len(self.lines):
                    self.lines.append([])
            elif char == "\r":
                self.col = 0
            elif char >= " ":
                if self.col >= self.cols:  # autowrap
                    self.row += 1
                    self.col = 0
                    if self.row == len(self.lines):
                        self.lines.append([])
                line = self.lines[self.row]
                line.extend(" " * (self.col - len(line) + 1))
                line[self.col] = char
                self.col += 1

    def text(self) -> list[str]:
        """Every line left on the terminal (scrollback included), trailing blank lines dropped."""
        out = ["".join(line).rstrip() for line in self.lines]
        while out and not out[-1]:
            out.pop()
        return out


@dataclass
class PtyResult:
    returncode: int
    raw: str
    screen: Screen


def run_on_pty(
    argv: list[str], env: dict[str, str], rows: int = 40, cols: int = 120, timeout: float = 300
) -> PtyResult:
    """Run `argv` with a pseudo-terminal of `rows` x `cols` as its stdin, stdout and stderr."""
    leader, follower = pty.openpty()
    ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    process = subprocess.Popen(
        argv,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
        start_new_session=True,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                process.kill()
                raise TimeoutError(f"{argv} still running after {timeout} s")
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif process.poll() is not None:
                break
    finally:
        os.close(leader)
    returncode = process.wait(timeout=30)
    raw = b"".join(chunks).decode("utf-8", errors="replace")
    screen = Screen(cols=cols)
    screen.feed(raw)
    return PtyResult(returncode, raw, screen)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--cols", type=int, default=120)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    result = run_on_pty(args.command, dict(os.environ), rows=args.rows, cols=args.cols, timeout=1800)
    for line in result.screen.text():
        print(line)
    print(
        f"--- exit {result.returncode}; {len(result.screen.text())} line(s) left on a "
        f"{args.rows}x{args.cols} terminal; deepest redraw {result.screen.max_cursor_up} line(s); "
        f"{result.raw.count(chr(10))} line feed(s) written",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
