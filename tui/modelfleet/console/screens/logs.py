"""A node's agent log, streamed over ssh as ``modelfleet logs NODE -f`` does (``l`` on a node or a run's host).

``f`` follows (keeps the newest line in view) or holds the view still, ``/`` searches (only matching lines, the
match highlighted; Esc clears), ``w`` wraps long lines. The stream (``runners/node_ssh.LogStream``) is read in a
worker thread into a queue that the screen drains ten times a second, so a burst of lines never holds the loop;
leaving the screen ends the ssh session.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, RichLog, Static

from modelfleet.console.screens.base import ViewScreen
from modelfleet.console.services import RunForm
from modelfleet.console.widgets.quiet_update import update_static
from modelfleet.core.errors import ModelfleetError
from modelfleet.runners.node_ssh import LogStream

MAX_LINES = 5000  # kept in memory (the node keeps the file)
FIRST_LINES = 200  # the stream starts with the log's last lines


class LogScreen(ViewScreen):
    BINDINGS = [Binding("f", "follow", "follow"), Binding("w", "wrap", "wrap")]
    AUTO_FOCUS = "#log-output"

    def __init__(self, node: str, model: str | None = None) -> None:
        super().__init__()
        self.node = node
        self.model = model
        self.crumb = f"logs {node}" + (f" ({model})" if model else "")
        self.lines: deque[str] = deque(maxlen=MAX_LINES)
        self.incoming: deque[str] = deque()  # appended by the reader thread, drained on the loop
        self.follow = True
        self.wrap = False
        self.search = ""
        self.stream: LogStream | None = None
        self.ended: str | None = None  # why the stream stopped (an error, or that the log ended)
        self._drawn: tuple[object, ...] = ()

    def body(self) -> ComposeResult:
        yield Static(id="log-summary", classes="summary")
        yield Input(placeholder="search the log (Enter shows the matching lines; Esc clears)", id="log-search")
        yield RichLog(id="log-output", max_lines=MAX_LINES, wrap=False, markup=False, highlight=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(0.1, self._drain)
        self._start()

    def on_unmount(self) -> None:
        super().on_unmount()
        self._stop()

    # -- the stream ----------------------------------------------------------------------------------------
    def _start(self) -> None:
        self.ended = None
        self.run_worker(self._read, thread=True, exclusive=True, group="log")

    def _stop(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close()

    def _read(self) -> None:
        """(worker thread) Start the ssh stream and queue its lines until it ends or the screen closes it."""
        try:
            stream = self.stream = self.mf.services.agent_log(self.node, self.model, lines=FIRST_LINES)
        except ModelfleetError as exc:
            self.ended = exc.message + (f" (fix: {exc.hint})" if exc.hint else "")
            return
        for line in stream:
            self.incoming.append(line)
        stream.wait()
        error = stream.error()
        if not stream.closed:
            self.ended = (error.message + (f" (fix: {error.hint})" if error.hint else "")) if error else \
                "the log stream ended"

    def _drain(self) -> None:
        new: list[str] = []
        while self.incoming:
            new.append(self.incoming.popleft())
        if new:
            self.lines.extend(new)
            log = self.query_one(RichLog)
            for line in new:
                if self._matches(line):
                    log.write(self._text(line), scroll_end=self.follow)
        self._show_summary()

    # -- drawing -------------------------------------------------------------------------------------------
    def _matches(self, line: str) -> bool:
        return not self.search or self.search.lower() in line.lower()

    def _text(self, line: str) -> Text:
        text = Text(line)
        if self.search:
            text.highlight_words([self.search], style="bold reverse", case_sensitive=False)
        return text

    def _redraw(self) -> None:
        log = self.query_one(RichLog)
        log.wrap = self.wrap
        log.auto_scroll = self.follow
        log.clear()
        for line in self.lines:
            if self._matches(line):
                log.write(self._text(line), scroll_end=self.follow)
        self._show_summary()

    def _show_summary(self) -> None:
        shown = sum(1 for line in self.lines if self._matches(line)) if self.search else len(self.lines)
        state = (len(self.lines), shown, self.follow, self.wrap, self.search, self.ended)
        if state == self._drawn:
            return
        self._drawn = state
        t = Text()
        t.append(f"{self.node}", style="bold")
        t.append(f" · {self.model or 'every model'} · agent log over ssh · ")
        t.append("following" if self.follow else "held (f follows)", style="green" if self.follow else "yellow")
        t.append(f" · wrap {'on' if self.wrap else 'off'} (w) · / search", style="dim")
        t.append(f" · {len(self.lines)} lines" + (f", {shown} match {self.search!r}" if self.search else ""),
                 style="dim")
        if self.ended:
            t.append(f"\n{self.ended}", style="red" if "fix:" in self.ended else "dim")
        update_static(self.query_one("#log-summary", Static), t)

    # -- keys ----------------------------------------------------------------------------------------------
    def action_follow(self) -> None:
        self.follow = not self.follow
        log = self.query_one(RichLog)
        log.auto_scroll = self.follow
        if self.follow:
            log.scroll_end(animate=False)
        self._show_summary()

    def action_wrap(self) -> None:
        self.wrap = not self.wrap
        self._redraw()

    def action_filter(self) -> None:
        box = self.query_one("#log-search", Input)
        box.add_class("-open")
        box.focus()

    @on(Input.Submitted, "#log-search")
    def _search(self, event: Input.Submitted) -> None:
        event.stop()
        self.search = event.value.strip()
        self.query_one(RichLog).focus()
        self._redraw()

    def go_back(self) -> bool:
        box = self.query_one("#log-search", Input)
        if box.has_class("-open") or self.search:
            box.value = ""
            box.remove_class("-open")
            self.query_one(RichLog).focus()
            if self.search:
                self.search = ""
                self._redraw()
            return True
        return False

    def reload(self) -> None:
        self._stop()
        self.lines.clear()
        self.incoming.clear()
        self.query_one(RichLog).clear()
        self._start()

    def action_shell(self) -> None:
        self.mf.open_shell(self.node)

    def copy_value(self) -> str | None:
        """The CLI twin of this screen."""
        return RunForm.shell(["modelfleet", "logs", self.node, *(["--model", self.model] if self.model else []),
                              "-f"])
