"""Names for shell completion, read live and cheaply: models, aliases and versions, nodes, groups, environments.

A TAB must answer in a blink, so nothing here imports MLflow, httpx or SQLAlchemy:

* the embedded registry (``sqlite:///``) is read directly, read-only (:func:`registry_sqlite.catalog_in_sqlite`);
* a tracking server is asked over its REST API (``registered-models/search``, ``model-versions/search``) with the
  standard library and a short timeout; the answer (or the failure) is kept for :data:`SERVER_CACHE_S` seconds in
  ``<state_dir>/completion-cache.json``, so a burst of TABs costs one round trip and a dead server one timeout;
* nodes, groups and environments come from the inventory file (``fleet.inventory``).

Every source that cannot be read gives no names (completion must never print an error into the prompt).
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from modelfleet.core.config import Settings
from modelfleet.core.fleet import ENVIRONMENT_GROUPS, Inventory
from modelfleet.core.registry_sqlite import CatalogEntry, catalog_in_sqlite, sqlite_path

SERVER_CACHE_S = 30.0
SERVER_TIMEOUT_S = 1.0
VERSIONS_PER_MODEL = 20
CACHE_FILE = "completion-cache.json"


class LiveNames:
    """The names a command line can refer to, for one set of settings (each source read at most once)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._catalog: list[CatalogEntry] | None = None
        self._inventory: Inventory | None = None
        self._inventory_read = False

    # -- registry ----------------------------------------------------------------------------------------------

    def catalog(self) -> list[CatalogEntry]:
        if self._catalog is None:
            uri = self.settings.effective_registry_uri
            db = sqlite_path(uri)
            if db is not None:
                self._catalog = catalog_in_sqlite(db, versions_per_model=VERSIONS_PER_MODEL) or []
            elif uri.startswith(("http://", "https://")):
                self._catalog = self._server_catalog(uri)
            else:
                self._catalog = []
        return self._catalog

    def models(self) -> list[str]:
        return [e.name for e in self.catalog()]

    def refs(self) -> list[str]:
        """``name@alias`` for every alias and ``@latest``, then ``name/version`` for the newest versions."""
        out: list[str] = []
        for e in self.catalog():
            out += [f"{e.name}@{a}" for a in sorted(e.aliases)] + [f"{e.name}@latest"]
            out += [f"{e.name}/{v}" for v in e.versions]
        return out

    def aliases(self) -> list[str]:
        return sorted({a for e in self.catalog() for a in e.aliases})

    def _server_catalog(self, uri: str) -> list[CatalogEntry]:
        cache = Path(self.settings.state_dir) / CACHE_FILE
        try:
            kept = json.loads(cache.read_text(encoding="utf-8"))
            if kept.get("uri") == uri and 0 <= time.time() - float(kept.get("at", 0)) < SERVER_CACHE_S:
                return [CatalogEntry(e["name"], dict(e["aliases"]), tuple(e["versions"])) for e in kept["entries"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        entries = _ask_server(uri)
        try:  # a failed answer is kept too: a dead server costs one timeout per SERVER_CACHE_S, not one per TAB
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"uri": uri, "at": time.time(), "entries": [asdict(e) for e in entries]}),
                           encoding="utf-8")
            tmp.replace(cache)
        except OSError:
            pass
        return entries

    # -- inventory ---------------------------------------------------------------------------------------------

    def inventory(self) -> Inventory | None:
        if not self._inventory_read:
            self._inventory_read = True
            try:
                self._inventory = Inventory.load(self.settings.fleet.inventory,
                                                 default_agent_port=self.settings.fleet.agent_port)
            except Exception:  # a missing or broken inventory just completes nothing
                self._inventory = None
        return self._inventory

    def nodes(self) -> list[str]:
        inv = self.inventory()
        return [n.name for n in inv.nodes] if inv else []

    def groups(self) -> list[str]:
        inv = self.inventory()
        return sorted(g for g in inv.groups if g not in ("all", "ungrouped")) if inv else []

    def environments(self) -> list[str]:
        inv = self.inventory()
        return [g for g in ENVIRONMENT_GROUPS if inv and g in inv.groups]


def _ask_server(uri: str) -> list[CatalogEntry]:
    """Models, aliases and newest versions from an MLflow tracking server's REST API; [] when it cannot answer."""
    import urllib.parse  # here, not at the top: urllib.request costs 15 ms a TAB on an embedded registry

    base = uri.rstrip("/") + "/api/2.0/mlflow/"
    try:
        found = _get(base + "registered-models/search?" + urllib.parse.urlencode({"max_results": 1000}))
        entries = []
        for rm in found.get("registered_models", []):
            name = rm["name"]
            aliases = {a["alias"]: int(a["version"]) for a in rm.get("aliases", [])}
            query = urllib.parse.urlencode({"filter": f"name = '{name}'", "max_results": 200})
            versions = sorted((int(v["version"]) for v in _get(base + "model-versions/search?" + query)
                               .get("model_versions", [])), reverse=True)[:VERSIONS_PER_MODEL]
            entries.append(CatalogEntry(name, aliases, tuple(versions)))
        return sorted(entries, key=lambda e: e.name)
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _get(url: str) -> dict[str, Any]:
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "application/json", **_auth_header()})
    with urllib.request.urlopen(request, timeout=SERVER_TIMEOUT_S) as resp:
        data = json.loads(resp.read())
    return data if isinstance(data, dict) else {}


def _auth_header() -> dict[str, str]:
    """MLflow's own client variables: a bearer token, or basic user and password."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}
