"""Release folder names on the nodes. Standard library only (nodes and the console import it).

A release unpacks into ``models/<model>/releases/<name>/`` where ``<name>`` is::

    <version>-<digest12>                      a release without per-group thresholds
    <version>-<digest12>-t<thresholds8>       a release that carries thresholds (first 8 hex digits of their
                                              sha256, ``core/approvals.thresholds_digest``)

The thresholds part keeps apart two releases of the same artifact that differ only in their thresholds (a
version that gains thresholds after it was deployed, or gets other ones): each has its own folder, so
``current``, ``previous`` and a rollback name exactly one release, and a node never mistakes one for the other
("already current"). The same rule is written out three times, each kept equal by tests/unit/test_release_names.py:
here, in ``roles/model_release/module_utils/modelfleet_release_node.py`` (stdlib, on the node) and in the
role's preflight (Jinja, ``model_release_name``).
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

RELEASE_NAME = re.compile(r"^(?P<version>.+?)-(?P<digest12>[0-9a-f]{12})(?:-t(?P<thresholds8>[0-9a-f]{8}))?$")


class ReleaseName(NamedTuple):
    version: str
    digest12: str  # "" when the name does not parse
    thresholds8: str  # "" for a release without thresholds


def release_name(version: str | int, digest: str, thresholds_sha256: str | None = None) -> str:
    """The folder name of ``version`` with artifact ``digest`` and (optionally) thresholds of that sha256."""
    name = f"{version}-{digest[:12]}"
    return f"{name}-t{thresholds_sha256[:8]}" if thresholds_sha256 else name


def split_release_name(name: str) -> ReleaseName:
    """``"7-0123456789ab-t89abcdef"`` -> ``ReleaseName("7", "0123456789ab", "89abcdef")``; a name that does not
    parse (or a path: only its last part counts) gives ``(name, "", "")``."""
    base = os.path.basename(name.rstrip("/"))
    m = RELEASE_NAME.match(base)
    if m is None:
        return ReleaseName(base, "", "")
    return ReleaseName(m.group("version"), m.group("digest12"), m.group("thresholds8") or "")


def release_version(name: str) -> str:
    """The version a release folder name stands for (the name itself when it does not parse)."""
    return split_release_name(name).version
