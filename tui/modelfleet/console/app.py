"""The modelfleet operator console (Textual). Thin on purpose: bindings, screen routing and workers.

Data flows one way: workers call :class:`~modelfleet.console.services.ConsoleServices` (which goes through
``core/`` and ``runners/``) in threads and post :mod:`~modelfleet.console.messages` up to the app; the app stores
the result in :class:`~modelfleet.console.messages.ConsoleState` and tells the screens, which read it (down).
Views are Textual modes built from the view registry (``views.py``): a view's key or ``:name`` always lands on its
root; drill-downs are pushed screens (Enter), Esc pops, ``q`` quits from a root. The command palette (Ctrl+P) lists
every key, view and command (``palette.py``).
"""

from __future__ import annotations

import importlib
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from textual import events, on, work
from textual._styles_cache import StylesCache
from textual.app import App, SuspendNotSupported, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import AwaitMount
from textual.widgets import Input

from modelfleet.console.approval_actions import ApprovalActions
from modelfleet.console.idle_gc import IdleCollector
from modelfleet.console.infra_actions import InfraActions
from modelfleet.console.keys import (
    HELP_COMMANDS,
    KEYMAP,
    QUIT_COMMANDS,
    READ_ONLY_DISABLED,
    RUN_COMMANDS,
    VIEW_KEYMAP,
    VIEW_KEYS,
    check_keys,
)
from modelfleet.console.messages import ConsoleState, Loaded, LoadFailed, RunEvent, RunFinished, RunStarted
from modelfleet.console.palette import console_commands, screen_action
from modelfleet.console.screens.base import ViewScreen
from modelfleet.console.screens.confirm import ConfirmScreen
from modelfleet.console.screens.help import HelpScreen
from modelfleet.console.screens.infra import InfraRunScreen
from modelfleet.console.screens.logs import LogScreen
from modelfleet.console.screens.run_live import RunLiveScreen
from modelfleet.console.screens.runs import RunFormScreen
from modelfleet.console.services import NEEDS_MODEL, ConsoleServices, RunForm, RunInfo
from modelfleet.console.views import VIEW_WORDS, VIEWS
from modelfleet.core.errors import GovernanceError, ModelfleetError
from modelfleet.core.fleet_status import Slo, alias_mismatches, placements
from modelfleet.runners.infra_state import InfraState
from modelfleet.runners.runstate import RunState

if TYPE_CHECKING:  # pragma: no cover
    from modelfleet.core.config import Settings
    from modelfleet.runners.requests import PreparedRun


def _screen_class(path: str) -> type[ViewScreen]:
    module, _, name = path.partition(":")
    cls: type[ViewScreen] = getattr(importlib.import_module(module), name)
    return cls


# ``:`` works from any focus (a table, a button, a drill-down): a priority binding, checked before the focused
# widget sees the key. It yields only to a text box the user is typing in (check_action below).
PRIORITY = ("command",)


def _bindings() -> list[Binding]:
    return [Binding(keys, action, desc, show=show, id=bid, priority=bid in PRIORITY)
            for bid, (keys, action, desc, show) in KEYMAP.items()]


class ModelfleetApp(InfraActions, ApprovalActions, App[None]):
    """``ModelfleetApp(settings)`` for the real thing; tests pass ``services`` with fixed data."""

    TITLE = "modelfleet"
    CSS_PATH = "app.tcss"
    BINDINGS: ClassVar[list[BindingType]] = _bindings()  # type: ignore[assignment]
    MODES = {v.name: _screen_class(v.screen) for v in VIEWS}
    DEFAULT_MODE = "fleet"
    FOLLOW_LEDGER_S = 2.0  # how often a view that follows the ledger asks for its head

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        services: ConsoleServices | None = None,
        read_only: bool | None = None,
        refresh_s: float | None = None,
        start_view: str = "fleet",
        clock: Callable[[], float] | None = None,
        keys: Mapping[str, str] | None = None,
        follow_s: float | None = None,
    ) -> None:
        super().__init__()
        if services is None:
            if settings is None:
                raise ValueError("ModelfleetApp needs settings or services")
            services = ConsoleServices(settings)
        self.services = services
        self.settings = settings if settings is not None else getattr(services, "settings", None)
        console = getattr(self.settings, "console", None)
        self.read_only = bool(read_only if read_only is not None else getattr(console, "read_only", False))
        self.refresh_s = float(refresh_s if refresh_s is not None else getattr(console, "refresh_s", 5.0))
        self.slo = Slo(console.slo_p50_ms, console.slo_p95_ms, console.slo_p99_ms) if console else Slo()
        self.now: Callable[[], float] = clock or getattr(services, "clock", None) or time.time
        self.state = ConsoleState()
        self.start_view = start_view
        self.periodic_refresh = refresh_s != 0
        self.follow_s = self.FOLLOW_LEDGER_S if follow_s is None else follow_s
        self._screens: set[ViewScreen] = set()
        self._fleet_busy = False
        self._monitor_busy = False
        self._switching = False
        self._held_switches: list[Callable[[], None]] = []
        self._then_apply: set[str] = set()  # destroy plans started here: their apply is asked for when they end
        # Textual 8.2's StylesCache.get_inner_outer is an lru_cache(1024) on an instance method, so it keeps the
        # StylesCache of up to 1,024 widgets reachable, with every line it rendered, after their screen is gone:
        # ~1,300 Strips (16,000 objects) more per minute of drill-downs and view changes in bench/console.py,
        # growing the heap the collector scans until the cache is full. Cleared before each idle collection.
        self.idle_gc = IdleCollector(before_collect=(StylesCache.get_inner_outer.cache_clear,))
        overrides = check_keys(keys if keys is not None else getattr(console, "keys", None))
        if overrides:
            self.set_keymap(overrides)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.idle_gc.start()
        self.set_interval(1.0, self.idle_gc.tick)
        self.load_context()
        self.switch_mode(self.start_view)
        if self.periodic_refresh and self.refresh_s > 0:
            self.set_interval(self.refresh_s, self._periodic)
        if self.follow_s > 0:
            self.set_interval(self.follow_s, self._follow_ledger)
        self.set_timer(self.PREPARE_VIEWS_AFTER_S, self._prepare_next_view)

    def _periodic(self) -> None:
        self.refresh_fleet()
        self.refresh_monitor()

    def _follow_ledger(self) -> None:
        screen = self.screen_stack[-1] if self.screen_stack else None
        if isinstance(screen, ViewScreen) and screen.follows_ledger:
            self.poll_ledger()

    def register_screen(self, screen: ViewScreen) -> None:
        self._screens.add(screen)

    def unregister_screen(self, screen: ViewScreen) -> None:
        self._screens.discard(screen)

    def crumbs(self, screen: ViewScreen) -> list[str]:
        stack = [s for s in self.screen_stack if isinstance(s, ViewScreen)]
        if screen not in stack:
            stack.append(screen)
        return [s.crumb for s in stack[: stack.index(screen) + 1] if s.crumb]

    def _changed(self, kind: str) -> None:
        for screen in list(self._screens):
            screen.data_changed(kind)

    @property
    def inventory_arg(self) -> str:
        return (self.state.context.get("inventory") or
                str(getattr(getattr(self.settings, "fleet", None), "inventory", "inventory.yml")))

    # -- routing and actions -------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Key dispatch and the key bar: False hides a key that means nothing here (and lets the key through).
        Actions disabled in read-only mode stay active: pressing their key says why nothing happens."""
        if action == "screen_action" and parameters:
            name = str(parameters[0])
            # typing in a box the user focused (a filter, a form field): the key is text, not a command
            if name == "command" and isinstance(self.focused, Input):
                return False
            return hasattr(self.screen, f"action_{name}")
        # (already in the form: the kind is a field)
        return not (action == "run_form" and isinstance(self.screen, RunFormScreen))

    def advertised(self, binding: Binding) -> bool:
        """Whether the key bar shows ``binding`` (active here): not the actions read-only mode disables, ``q``
        only at a view's root (where it quits), Esc only off it."""
        bid = binding.id or ""
        if self.read_only and (bid in READ_ONLY_DISABLED or bid in VIEW_KEYMAP):
            return False
        if bid in ("close", "back"):
            return (len(self.screen_stack) <= 1) == (bid == "close")
        return True

    def offers(self, bid: str, screen: Screen[object]) -> bool:
        """Whether the command palette opened on ``screen`` lists binding ``bid``."""
        if self.read_only and bid in READ_ONLY_DISABLED:
            return False
        name = screen_action(KEYMAP[bid][1])
        return name is None or hasattr(screen, f"action_{name}")

    def key_labels(self, bid: str) -> list[str]:
        """The keys of binding ``bid`` as shown (after ``[console.keys]``): ``["?"]``, ``["^q"]``."""
        keys = self._keymap.get(bid, (KEYMAP.get(bid) or VIEW_KEYMAP[bid])[0])
        return [self.get_key_display(Binding(k.strip(), "")) for k in keys.split(",") if k.strip()]

    def view_tabs(self) -> list[tuple[str, str, bool]]:
        """(key, view, current) of every view, for the header."""
        return [("/".join(self.key_labels(v.name)), v.name, v.name == self.current_mode) for v in VIEWS]

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from console_commands(self, screen)
        yield from (c for c in super().get_system_commands(screen) if c.title != "Quit")

    def refuse_read_only(self, what: str) -> bool:
        """True (and says so) when read-only mode disables ``what``."""
        if self.read_only:
            self.notify(f"read-only mode: {what} is disabled (open the console without --read-only)",
                        severity="warning")
        return self.read_only

    def action_view(self, name: str) -> None:
        self.show_view(name)

    def show_view(self, name: str) -> None:
        """View ``name`` at its root, whatever was drilled into it (k9s: ``:pods`` is always the pod list)."""
        if self.current_mode == name:
            while len(self.screen_stack) > 1 and isinstance(self.screen, ViewScreen):
                self.pop_screen()
            return
        stack = self._screen_stacks.get(name)  # (Textual has no public way to trim a mode it does not show)
        while stack is not None and len(stack) > 1 and isinstance(stack[-1], ViewScreen):
            stack.pop().remove()
        self.switch_mode(name)

    # -- view switches -------------------------------------------------------------------------------------
    SWITCH_HOLD_MAX_S: float | None = None  # None: the hold Textual asks for (50 ms)

    def switch_mode(self, mode: str) -> AwaitMount:
        self._switching = True
        try:
            return super().switch_mode(mode)
        finally:
            self._switching = False

    def delay_update(self, delay: float = 0.05) -> None:
        """Textual's ``switch_mode`` holds every frame back for 50 ms, so that a view being composed does not
        flash on the screen half-built. The console holds them until the new view has handled its resume
        (``view_ready``: composed, styled, its data drawn), and at most that long: a view shows ~40 ms sooner,
        and a view switch stays under 100 ms (bench/console.py)."""
        if not self._switching:
            super().delay_update(delay)
            return
        self._begin_batch()
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            if release in self._held_switches:
                self._held_switches.remove(release)
            self._end_batch()
            if not self._batch_count:
                self.screen.refresh()

        self._held_switches.append(release)
        self.set_timer(delay if self.SWITCH_HOLD_MAX_S is None else self.SWITCH_HOLD_MAX_S, release,
                       name="switch_hold")

    PREPARE_VIEWS_AFTER_S = 1.0  # after start, the views not shown yet are composed, hidden, one per step

    def _prepare_next_view(self) -> None:
        """Compose one view that has not been shown yet, hidden, so that its first visit is a switch like any
        other: composing and mounting a view on the key press cost its first visit 40-80 ms more. Textual has no
        public way to build a mode's screen without showing it: this is App._init_mode without the resume (recheck
        on a Textual upgrade; tests/console/test_view_switch.py fails when it stops working)."""
        if not self.is_running:  # shutting down: Textual is closing every stack (a new one breaks its loop)
            return
        stacks = self._screen_stacks
        for mode, factory in self.MODES.items():
            if mode != self.current_mode and not stacks.get(mode) and isinstance(factory, type):
                screen = factory()
                stacks[mode] = [screen]
                self._get_screen(screen)  # registers it: composed and mounted by its own message pump
                self.set_timer(self.PREPARE_VIEWS_AFTER_S / 2, self._prepare_next_view)
                return

    def view_ready(self, screen: ViewScreen) -> None:
        """``screen`` handled its resume: the frames held for switching to it go out after this turn."""
        if screen is self.screen and self._held_switches:
            held = list(self._held_switches)
            self.call_later(lambda: [release() for release in held])

    def action_screen_action(self, name: str) -> None:
        if name in READ_ONLY_DISABLED and self.refuse_read_only(KEYMAP[name][2].rstrip("…")):
            return
        method = getattr(self.screen, f"action_{name}", None)
        if method is not None:
            method()

    def action_go_back(self) -> None:
        screen = self.screen
        if isinstance(screen, ViewScreen) and screen.go_back():
            return
        if len(self.screen_stack) > 1:
            self.pop_screen()

    def action_close(self) -> None:
        """``q``: quit from a view's root (k9s, lazygit); from a drill-down, back."""
        if len(self.screen_stack) <= 1:
            self.exit()
        else:
            self.action_go_back()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_help()))

    def key_help(self) -> list[tuple[str, str]]:
        in_view = {bid: view for view, ids in VIEW_KEYS.items() for bid in ids}
        return [(", ".join(self.key_labels(bid)), desc + (f" (in :{in_view[bid]})" if bid in in_view else "")
                 + (" (disabled: read-only)" if self.read_only and (bid in READ_ONLY_DISABLED or bid in in_view)
                    else ""))
                for bid, (_keys, _action, desc, _show) in [*KEYMAP.items(), *VIEW_KEYMAP.items()]]

    def action_refresh(self) -> None:
        screen = self.screen
        if isinstance(screen, ViewScreen):
            screen.reload()
        else:
            self.refresh_fleet()

    def action_run_form(self, kind: str = "", row: bool = True) -> None:
        """The run form for ``kind``, prefilled from the current view; ``row``: from the row under the cursor
        (a key), not from the command line (``:deploy`` must not pick up the node under the cursor)."""
        if self.refuse_read_only("launching runs"):
            return
        screen = self.screen
        if isinstance(screen, RunFormScreen):
            return
        defaults: dict[str, Any] = screen.context_for_run(row) if isinstance(screen, ViewScreen) else {}
        if kind:
            defaults["kind"] = kind
        if defaults.get("kind", "deploy") in NEEDS_MODEL and not defaults.get("model"):
            model = self.only_model()
            if model:
                defaults["model"] = model
        self.push_screen(RunFormScreen(defaults))

    def only_model(self) -> str | None:
        """The model a run form can assume without a row to take it from: the one model the fleet runs, else
        the registry's only model."""
        running = {s.model for s in self.state.fleet or [] if s.model}
        if len(running) == 1:
            return next(iter(running))
        models = self.state.models or []
        return models[0].name if len(models) == 1 and not running else None

    def run_command(self, text: str) -> None:
        word, _, _rest = text.strip().partition(" ")
        word = word.lower()
        if word in QUIT_COMMANDS:
            self.exit()
        elif word in VIEW_WORDS:
            self.show_view(VIEW_WORDS[word])
        elif word in HELP_COMMANDS:
            self.action_help()
        elif word in RUN_COMMANDS:
            self.action_run_form(RUN_COMMANDS[word], row=False)
        elif word:
            words = ", ".join(f":{v.name}" for v in VIEWS)
            self.notify(f"unknown command :{word}; try {words}, :deploy, :help (Ctrl+P lists everything)",
                        severity="warning")

    # -- node access and copy ------------------------------------------------------------------------------
    def open_logs(self, node: str, model: str | None = None) -> None:
        """``l``: the agent's log of ``node`` (``model``'s, or every model's), streamed over ssh."""
        self.push_screen(LogScreen(node, model))

    def open_shell(self, node: str) -> None:
        """``s``: an ssh shell on ``node``; the console is suspended until it exits."""
        if not self.refuse_read_only("the shell"):
            self._shell_command(node)

    @work(thread=True, exclusive=True, group="shell")
    def _shell_command(self, node: str) -> None:
        self._call("shell", lambda: self.services.shell_command(node), node)

    def _run_shell(self, node: str, cmd: list[str]) -> None:
        try:
            with self.suspend():
                print(f"modelfleet: a shell on {node}; exit it to return to the console", flush=True)
                rc = subprocess.run(cmd, check=False).returncode
        except SuspendNotSupported:
            self.notify(f"this terminal cannot hand over to a shell; run it yourself:\n{RunForm.shell(cmd)}",
                        severity="warning", timeout=15)
            return
        except OSError as exc:
            self.notify(f"could not start the shell: {exc}", severity="error")
            return
        self.notify(f"shell on {node} ended" + (f" (exit {rc})" if rc else ""), timeout=4)

    def copy(self, text: str | None) -> None:
        """``y``: ``text`` to the clipboard (OSC 52: the terminal's own, which works over ssh too)."""
        if not text:
            self.notify("nothing to copy here", severity="warning")
            return
        self.copy_to_clipboard(text)
        self.notify(f"copied {text if len(text) <= 60 else text[:57] + '…'}", timeout=3)

    # -- workers: loading ---------------------------------------------------------------------------------
    def _call(self, kind: str, fn: Callable[[], Any], key: str | None = None) -> None:
        try:
            payload = fn()
        except ModelfleetError as exc:
            self.post_message(LoadFailed(kind, exc.message, exc.hint, key))
            return
        except Exception as exc:  # a bug or an unexpected library error: show it, keep the console alive
            self.post_message(LoadFailed(kind, f"{type(exc).__name__}: {exc}", None, key))
            return
        self.post_message(Loaded(kind, payload, key))

    @work(thread=True, exclusive=True, group="context")
    def load_context(self) -> None:
        self._call("context", self.services.context)
        self._call("inventory", self.services.inventory)

    @work(thread=True, exclusive=True, group="models")
    def load_models(self) -> None:
        self._call("models", self.services.models)

    @work(thread=True, exclusive=True, group="versions")
    def load_versions(self, model: str) -> None:
        fleet = list(self.state.fleet or [])

        def load() -> dict[str, Any]:
            versions = self.services.versions(model)
            try:
                events = self.services.placement_events(model)
            except ModelfleetError:
                events = []
            places = placements(model, events, fleet)
            aliases = {a: v.version for v in versions for a in v.aliases}
            try:
                governance, governance_error = self.services.version_governance(model, versions), None
            except ModelfleetError as exc:
                governance, governance_error = {}, exc.message
            return {"versions": versions, "placements": places, "flags": alias_mismatches(aliases, places),
                    "governance": governance, "governance_error": governance_error}

        self._call("versions", load, model)

    @work(thread=True, exclusive=True, group="detail")
    def load_version_detail(self, model: str, version: int) -> None:
        self._call("details", lambda: self.services.version_detail(model, version), f"{model}/{version}")

    def refresh_fleet(self) -> None:
        if not self._fleet_busy:
            self._fleet_busy = True
            # Measured (bench/console.py, docs/benchmarks.md): on the UI loop, the probe's ~600 small steps per
            # 200 agents queued up between frames (heartbeat stalls of 40-64 ms); in a thread of this process it
            # held the GIL against drawing (frames took 1.5x their CPU time). The worker thread only waits on the
            # probe's child process (services.probe).
            self._refresh_fleet()

    @work(thread=True, exclusive=True, group="fleet")
    def _refresh_fleet(self) -> None:
        self._call("fleet", lambda: (self.services.probe(), self.now()))

    def refresh_monitor(self) -> None:
        """A monitoring pass (drift and latency verdicts, p95 history): the first after the first fleet probe,
        then with every refresh. The pass runs in its own niced child process (services.monitor); this worker
        thread only waits on it and unpickles the answer."""
        if not self._monitor_busy:
            self._monitor_busy = True
            self._refresh_monitor()

    @work(thread=True, exclusive=True, group="monitor")
    def _refresh_monitor(self) -> None:
        self._call("monitor", self.services.monitor)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):
            self.idle_gc.input_seen()
        await super().on_event(event)

    async def on_unmount(self) -> None:
        self.idle_gc.stop()
        await self.services.aclose()

    @work(thread=True, exclusive=True, group="releases")
    def load_releases(self, node: str) -> None:
        def load() -> tuple[Any, list[Any]]:
            try:
                rel = self.services.releases(node)
            except ModelfleetError:
                rel = None
            try:
                events = self.services.ledger_events({"node": node}, limit=50)
            except ModelfleetError:
                events = []
            return rel, events

        self._call("releases", load, node)

    def load_ledger(self, filters: Mapping[str, str] | None = None) -> None:
        self.state.ledger_filters = dict(filters or {})
        self._load_ledger(dict(filters or {}))
        self.verify_ledger()

    @work(thread=True, exclusive=True, group="head")
    def poll_ledger(self) -> None:
        self._call("head", self.services.ledger_head)

    @work(thread=True, exclusive=True, group="notable")
    def load_notable(self) -> None:
        self._call("notable", self.services.notable_events)

    @work(thread=True, exclusive=True, group="inventory")
    def load_inventory(self) -> None:
        self._call("inventory", self.services.inventory)

    @work(thread=True, exclusive=True, group="ledger")
    def _load_ledger(self, filters: dict[str, str]) -> None:
        self._call("ledger", lambda: self.services.ledger_events(filters))

    @work(thread=True, exclusive=True, group="verify")
    def verify_ledger(self) -> None:
        self._call("verify", self.services.ledger_verify)

    @work(thread=True, exclusive=True, group="runs")
    def load_runs(self) -> None:
        self._call("runs", self.services.runs)

    @work(thread=True, group="replay")
    def replay_run(self, run: Any) -> None:
        self._call("replay", lambda: self.services.replay(run), run.run_id)

    @on(Loaded)
    def _loaded(self, msg: Loaded) -> None:
        s = self.state
        s.errors.pop(msg.kind, None)
        if msg.kind == "context":
            s.context = msg.payload
            for screen in list(self._screens):
                if screen.is_mounted:
                    screen.update_header()
            return
        if msg.kind == "models":
            s.models = msg.payload
        elif msg.kind == "versions" and msg.key:
            s.versions[msg.key] = msg.payload
        elif msg.kind == "details" and msg.key:
            s.details[msg.key] = msg.payload
        elif msg.kind == "fleet":
            self._fleet_busy = False
            s.fleet, s.fleet_at = msg.payload
            s.fleet_error = None
            if s.monitor is None and not self._monitor_busy and "monitor" not in s.errors:
                self.refresh_monitor()
        elif msg.kind == "monitor":
            self._monitor_busy = False
            s.monitor, s.monitor_error = msg.payload, None
        elif msg.kind == "releases" and msg.key:
            s.releases[msg.key] = msg.payload
        elif msg.kind == "ledger":
            s.ledger = msg.payload
        elif msg.kind == "verify":
            s.verify = msg.payload
        elif msg.kind == "runs":
            s.runs = msg.payload
        elif msg.kind == "replay" and msg.key:
            s.live[msg.key] = msg.payload
            self._changed("live")
            self.push_screen(self.live_screen(msg.key))
            return
        elif msg.kind == "prepared":
            self._prepared(msg.payload)
            return
        elif msg.kind in ("infra", "approvals"):  # (ConsoleState fields of the same names)
            setattr(s, msg.kind, msg.payload)
        elif msg.kind in ("infra_details", "infra_inventory") and msg.key:
            getattr(s, msg.kind)[msg.key] = msg.payload
            if msg.kind == "infra_inventory":  # written after an apply: the Fleet view reads it again
                self.refresh_fleet()
        elif msg.kind == "infra_prepared":
            self._infra_prepared(*msg.payload)
            return
        elif msg.kind == "decided":
            self._decided(msg.payload)
            return
        elif msg.kind == "pinned":
            form, model, ref, version, digest = msg.payload
            form.pinned_now(model, ref, version, digest)
            return
        elif msg.kind == "head":
            s.ledger_head = msg.payload
            shown = self.screen_stack[-1] if self.screen_stack else None  # (none while the app shuts down)
            if isinstance(shown, ViewScreen):
                shown.ledger_moved(msg.payload)
            return
        elif msg.kind == "notable":
            s.notable = msg.payload
        elif msg.kind == "inventory":
            s.inventory = msg.payload
        elif msg.kind == "shell" and msg.key:
            self._run_shell(msg.key, msg.payload)
            return
        self._changed(msg.kind)

    @on(LoadFailed)
    def _failed(self, msg: LoadFailed) -> None:
        again = self.state.errors.get(msg.kind) == msg.message
        self.state.errors[msg.kind] = msg.message
        if msg.kind == "fleet":
            self._fleet_busy = False
            self.state.fleet_error = f"fleet: {msg.message}" + (f" (fix: {msg.hint})" if msg.hint else "")
        if msg.kind == "monitor":
            self._monitor_busy = False
            self.state.monitor_error = f"monitor: {msg.message}" + (f" (fix: {msg.hint})" if msg.hint else "")
        text = msg.message + (f"\nfix: {msg.hint}" if msg.hint else "")
        if not (again and msg.kind == "monitor"):  # (a pass failing every refresh says so once, then in the view)
            self.notify(text, title=f"{msg.kind} failed", severity="error", timeout=8)
        self._changed(msg.kind)

    # -- runs ---------------------------------------------------------------------------------------------
    def pin_for_form(self, form: RunFormScreen, model: str, ref: str | None) -> None:
        """Pin (deploy) for the form's preview, without preparing or launching anything."""
        self._pin(form, model, ref)

    @work(thread=True, exclusive=True, group="pin")
    def _pin(self, form: RunFormScreen, model: str, ref: str | None) -> None:
        def pin() -> tuple[RunFormScreen, str, str | None, int, str]:
            version, digest = self.services.pin(model, ref)
            return form, model, ref, version, digest

        self._call("pinned", pin)

    def request_launch(self, form: RunFormScreen) -> None:
        if self.refuse_read_only("launching runs"):
            return
        req = form.request()
        try:
            req.validate()
        except ModelfleetError as exc:
            self.notify(exc.message + (f"\nfix: {exc.hint}" if exc.hint else ""), severity="error")
            return
        self.notify(f"preparing {req.kind}: checking the target" + (", pinning and bundling" if req.kind == "deploy"
                                                                   else "") + "…", timeout=3)
        self._prepare(req)

    @work(thread=True, exclusive=True, group="prepare")
    def _prepare(self, req: RunForm) -> None:
        """The run pipeline's checks, pin and bundle; nothing is written until the operator confirms. A deploy to
        a protected environment without its gate and approvals is refused here, with what is missing."""

        def prepare() -> tuple[RunForm, PreparedRun | GovernanceError, bool]:
            try:
                prepared = self.services.prepare(req)
            except GovernanceError as exc:
                return req, exc, False
            return req, prepared, self.services.is_fleet_wide(req.target)

        self._call("prepared", prepare)

    def _prepared(self, payload: tuple[RunForm, PreparedRun | GovernanceError, bool]) -> None:
        req, prepared, fleet_wide = payload
        if isinstance(prepared, GovernanceError):
            missing = "\n".join(f"  ✘ {m}" for m in prepared.missing) or f"  ✘ {prepared.message}"
            self.push_screen(ConfirmScreen(
                f"{req.kind} refused: the target is a protected environment", f"Missing:\n{missing}\n\n"
                + (f"fix: {prepared.hint}\n\n" if prepared.hint else "") + "Nothing was started.",
                confirm_label=None, dismiss_label="Close"))
            return
        hosts = prepared.hosts
        body = (f"{prepared.summary}\n{len(hosts)} host(s): {', '.join(hosts[:8])}{' …' if len(hosts) > 8 else ''}"
                f"\n\n$ {RunForm.shell(req.cli_command())}\n\n"
                f"$ {RunForm.shell(req.playbook_command(self.inventory_arg, self.settings))}")
        for warning in prepared.warnings:
            body += f"\n\nWARNING: {warning}"
        if req.check:
            body += "\n\ncheck mode: nothing will change"

        def done(ok: bool | None) -> None:
            if ok:
                self._launch(prepared)

        self.push_screen(ConfirmScreen(f"Start {prepared.summary}?", body,
                                       typed=req.target if fleet_wide else None), done)

    def _launch(self, prepared: PreparedRun) -> None:
        """Start ``prepared`` and show it live: a playbook run over the Runs view, a Terraform run over the view
        it was started from (it is in the Runs list too)."""
        run_id = prepared.run_id
        if prepared.executor == "terraform":
            st = InfraState(run_id, kind=prepared.kind)
            # an apply's resources are its saved plan's: counted from the start (the apply prints no plan)
            plan = prepared.details.get("plan") or {}
            st.planned.update({r["address"]: r["action"] for r in plan.get("resources", [])})
            self.state.live[run_id] = st
        else:
            self.state.live[run_id] = RunState(run_id, kind=prepared.kind, hosts=prepared.hosts)
        self.state.handles[run_id] = None
        self.state.launched[run_id] = RunInfo(run_id, prepared.kind, self.now(), "running", prepared.model,
                                              prepared.version, prepared.limit or "all", self.services.actor)
        self._changed("live")
        if prepared.executor != "terraform":
            self.show_view("runs")  # the list's root, then this run on it: never run A > run B
        self.push_screen(self.live_screen(run_id))
        self._run_worker(prepared)

    def live_screen(self, run_id: str) -> RunLiveScreen:
        return InfraRunScreen(run_id) if isinstance(self.state.live.get(run_id), InfraState) else RunLiveScreen(run_id)

    @work(thread=True, group="run")
    def _run_worker(self, prepared: PreparedRun) -> None:
        run_id = prepared.run_id

        def on_event(ev: dict[str, Any]) -> None:
            self.post_message(RunEvent(run_id, ev))

        try:
            handle = self.services.launch(prepared, on_event)
        except ModelfleetError as exc:
            self.post_message(LoadFailed("run", exc.message, exc.hint, run_id))
            self.post_message(RunFinished(run_id, "error", None, exc.message))
            return
        except Exception as exc:
            self.post_message(LoadFailed("run", f"{type(exc).__name__}: {exc}", None, run_id))
            self.post_message(RunFinished(run_id, "error", None, str(exc)))
            return
        self.state.handles[run_id] = handle
        self.post_message(RunStarted(run_id))
        result = handle.wait()
        self.post_message(RunFinished(run_id, result.status, result.rc, result.problem, result.executor_result))

    @on(RunStarted)
    def _run_started(self, msg: RunStarted) -> None:
        self._changed("live")

    @on(RunEvent)
    def _run_event(self, msg: RunEvent) -> None:
        st = self.state.live.get(msg.run_id)
        if st is not None:
            st.feed(msg.event)
            self._changed("live")

    @on(RunFinished)
    def _run_finished(self, msg: RunFinished) -> None:
        st = self.state.live.get(msg.run_id)
        if st is None:
            return
        st.finish(msg.status, msg.rc, msg.error)
        self._changed("live")
        severity: Literal["information", "error"] = "information" if st.outcome() == "ok" else "error"
        text = st.summary() + (f"\n{st.problem()}" if st.problem() else "")
        self.notify(text, title="run finished", severity=severity, timeout=10)
        self.load_runs()
        self.refresh_fleet()
        if isinstance(st, InfraState):
            self._infra_finished(msg.run_id, st, msg.result)

    def run_info(self, run_id: str) -> RunInfo | None:
        """What is known of a run: launched here, or listed from the ledger and the artifact folders."""
        return self.state.launched.get(run_id) or next((r for r in self.state.runs or [] if r.run_id == run_id),
                                                        None)

    def open_run(self, run_id: str) -> None:
        if run_id in self.state.live:
            self.push_screen(self.live_screen(run_id))
            return
        run = next((r for r in self.state.runs or [] if r.run_id == run_id), None)
        if run is None:
            return
        if not run.replayable:
            self.notify(f"run {run_id} has no artifact folder to replay; its ledger events are in :ledger",
                        severity="warning")
            return
        self.replay_run(run)

    def request_cancel(self, run_id: str) -> None:
        handle = self.state.handles.get(run_id)
        st = self.state.live.get(run_id)
        if handle is None or st is None or st.finished:
            self.notify("nothing to cancel: the run is not running here", severity="warning")
            return
        # held while the question is open: the wave in progress finishes its tasks, and no further wave starts
        # however long the answer takes (what the question says stays true)
        handle.hold()

        def done(ok: bool | None) -> None:
            if ok:
                handle.cancel()
                self.notify(f"cancel requested for {run_id}")
            else:
                handle.resume()

        body = ("The run is held: hosts in the current wave finish their task, and no further wave starts while "
                "you decide. Cancel stops it there; Keep going lets it continue.")
        if isinstance(st, InfraState):
            body = ("Cancel stops Terraform: it finishes the resource operations in flight and saves its state; "
                    "a later plan shows what is left. Keep going lets it continue.")
        self.push_screen(ConfirmScreen(f"Cancel {run_id}?", body, confirm_label="Cancel run",
                                       dismiss_label="Keep going"), done)
