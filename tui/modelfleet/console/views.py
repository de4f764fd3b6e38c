"""The console's views, in one registry (no Textual import: the CLI reads it to check ``[console.keys]``).

A view is a Textual mode: its key (``1`` ... ) and ``:name`` always land on its root screen. Everything that lists
views is built from :data:`VIEWS`: the key table (``keys.KEYMAP``), the app's modes, the ``:`` command words and
their completion, the key help, and the command palette (Ctrl+P). Adding a view is one :class:`ViewSpec` here
plus its screen module (a :class:`~modelfleet.console.screens.base.ViewScreen` subclass).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ViewSpec:
    name: str  # the mode, the key binding id and the ``:name`` command
    key: str  # default key (Textual key name); remap with [console.keys] <name> = "..."
    title: str  # breadcrumb and palette title
    help: str  # one line: key help, palette, docs
    screen: str  # "module:Class" of its root screen
    aliases: tuple[str, ...] = ()  # more ``:`` words for it

    @property
    def words(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec("models", "1", "Models", "registered models and their versions, aliases, where each runs",
             "modelfleet.console.screens.models:ModelsScreen", ("m",)),
    ViewSpec("fleet", "2", "Fleet", "every node: version, health, latency against the SLO, errors, last seen",
             "modelfleet.console.screens.fleet:FleetScreen", ("f", "nodes")),
    ViewSpec("runs", "3", "Runs", "runs launched here or elsewhere, newest first; Enter opens one live or replayed",
             "modelfleet.console.screens.runs:RunsScreen", ("r",)),
    ViewSpec("ledger", "4", "Ledger", "every ledger event, live, with field filters and the hash-chain check",
             "modelfleet.console.screens.ledger:LedgerScreen", ("l",)),
    ViewSpec("infra", "5", "Infrastructure", "Terraform environments: plan, apply the saved plan, destroy",
             "modelfleet.console.screens.infra:InfraScreen", ("i", "terraform")),
    ViewSpec("approvals", "6", "Approvals", "approval requests: approve or reject within your roles",
             "modelfleet.console.screens.approvals:ApprovalsScreen", ("a",)),
    ViewSpec("drift", "7", "Drift and latency", "latency, errors and drift per model version and node; Enter "
             "drills into one", "modelfleet.console.screens.drift:DriftScreen", ("latency",)),
    ViewSpec("events", "8", "Events", "what needs attention: failed runs and nodes, rollbacks, unreachable nodes, "
             "gates, approvals, alerts; newest first", "modelfleet.console.screens.events:EventsScreen",
             ("alerts",)),
)

VIEW_WORDS: dict[str, str] = {word: v.name for v in VIEWS for word in v.words}


def view(name: str) -> ViewSpec:
    return next(v for v in VIEWS if v.name == name)
