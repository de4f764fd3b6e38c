#!/usr/bin/env python3
"""Run a ``pip install`` and show its progress the way a first-time ``make run`` needs to see it.

    python3 scripts/pip_progress.py --log .venv/pip-install.log -- .venv/bin/python -m pip install -r req.txt

Says first what is installed and how many packages (counted from each ``-r`` file), then one line per stage
with the elapsed time: every package as pip collects (or downloads) it, the long unpacking step, the end. On a
terminal the collecting count updates in place; elsewhere (CI, a log) a line every 10 packages and one per
download of a megabyte or more. When pip is silent for ``--heartbeat`` seconds (unpacking 150 packages) a line
says it is still working. pip's full output goes to ``--log``; if pip fails, its last 40 lines are printed with
the log's path and the exit code is pip's. Standard library only: it runs before the venv has anything.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

_COLLECTING = re.compile(r"^(?:Collecting|Processing|Obtaining) (\S+)")
_DOWNLOADING = re.compile(r"^\s*Downloading (\S+?)(?: \(([^)]+)\))?$")
_SATISFIED = re.compile(r"^Requirement already satisfied: (\S+)")
_INSTALLING = re.compile(r"^Installing collected packages: (.*)")
_INSTALLED = re.compile(r"^Successfully installed (.*)")


def count_requirements(files: list[Path]) -> int:
    """Pinned requirement lines (``name==version``) in the given requirements files."""
    total = 0
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?\s*==", line):
                total += 1
    return total


class Progress:
    def __init__(self, total: int, tty: bool, heartbeat_s: float) -> None:
        self.start = time.monotonic()
        self.total = total
        self.tty = tty
        self.heartbeat_s = heartbeat_s
        self.seen = 0
        self.stage = "starting pip"
        self.last_output = self.start
        self.lock = threading.Lock()
        self.inline = False

    def stamp(self) -> str:
        minutes, seconds = divmod(int(time.monotonic() - self.start), 60)
        return f"[{minutes:2d}:{seconds:02d}]"

    def line(self, text: str) -> None:
        if self.inline:
            sys.stdout.write("\n")
            self.inline = False
        sys.stdout.write(f"{self.stamp()} {text}\n")
        sys.stdout.flush()
        self.last_output = time.monotonic()

    def update(self, text: str) -> None:
        """A line that replaces itself on a terminal."""
        sys.stdout.write(f"\r\x1b[K{self.stamp()} {text}")
        sys.stdout.flush()
        self.inline = True
        self.last_output = time.monotonic()

    def feed(self, raw: str) -> None:
        text = raw.rstrip()
        with self.lock:
            if m := (_COLLECTING.match(text) or _SATISFIED.match(text)):
                self.seen += 1
                of = f"/{self.total}" if self.total else ""
                self.stage = f"collecting {self.seen}{of}: {m.group(1).rsplit('/', 1)[-1]}"
                if self.tty:
                    self.update(self.stage)
                elif self.seen == 1 or self.seen % 10 == 0 or self.seen == self.total:
                    self.line(self.stage)
            elif (m := _DOWNLOADING.match(text)) and m.group(2):
                self.stage = f"downloading {m.group(1).rsplit('/', 1)[-1]} ({m.group(2)})"
                if self.tty:
                    self.update(self.stage)
                elif m.group(2).endswith(("MB", "GB")):  # without a terminal, only the big ones get a line
                    self.line(self.stage)
            elif m := _INSTALLING.match(text):
                count = len([p for p in m.group(1).split(",") if p.strip()])
                self.stage = f"installing {count} package(s) into the venv (unpacking; the longest silent step)"
                self.line(self.stage)
            elif m := _INSTALLED.match(text):
                count = len(m.group(1).split())
                self.line(f"installed {count} package(s)")

    def heartbeat(self, done: threading.Event) -> None:
        while not done.wait(min(1.0, self.heartbeat_s / 2)):
            with self.lock:
                if time.monotonic() - self.last_output >= self.heartbeat_s:
                    self.line(f"still working: {self.stage}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, required=True, help="where pip's full output goes")
    parser.add_argument("--what", default="Python packages", help="what is installed, for the first line")
    parser.add_argument("--heartbeat", type=float, default=15.0, metavar="SECONDS")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the pip command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the pip command after --")
    files = [Path(command[i + 1]) for i, word in enumerate(command[:-1]) if word in ("-r", "--requirement")]
    total = count_requirements(files)
    progress = Progress(total, sys.stdout.isatty(), args.heartbeat)
    source = f" from {', '.join(str(f) for f in files)}" if files else ""
    progress.line(f"installing {f'{total} ' if total else ''}{args.what}{source} (pip's output: {args.log})")
    args.log.parent.mkdir(parents=True, exist_ok=True)
    done = threading.Event()
    ticker = threading.Thread(target=progress.heartbeat, args=(done,), daemon=True)
    tail: list[str] = []
    with args.log.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen([*command, "--progress-bar", "off"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        ticker.start()
        assert proc.stdout is not None
        for raw in proc.stdout:
            log.write(raw)
            tail = [*tail[-39:], raw.rstrip()]
            progress.feed(raw)
        code = proc.wait()
    done.set()
    ticker.join()
    if code != 0:
        progress.line(f"pip failed (exit {code}); its last lines (all of them in {args.log}):")
        sys.stdout.write("\n".join(f"    {line}" for line in tail) + "\n")
        return code
    progress.line(f"done: {progress.seen} package(s) checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
