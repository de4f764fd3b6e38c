"""Containers whose children cover them entirely skip drawing their own (invisible) background.

Textual's compositor renders every widget on the screen, front to back, and keeps the front-most strip of each
piece of a line: a container's own lines are drawn and then thrown away wherever its children sit on top. A
table's container (44 lines at 160 columns) or a split view's ``Horizontal`` cost 2-4 ms each per full frame
(a view's first frame, a resize), for nothing when the children tile it. ``TiledHorizontal`` and
``TiledVertical`` hand the compositor one shared blank line per row instead, whenever the children's regions add
up to their own; otherwise they draw as usual.
"""

from __future__ import annotations

from textual.containers import Horizontal, Vertical
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget


def children_cover(widget: Widget) -> bool:
    """Whether ``widget``'s displayed children, inside it and not overlapping (a vertical or horizontal layout),
    add up to its whole region: then none of its own lines can be seen."""
    region = widget.region
    layout = widget.styles.layout  # (None: Textual's default, vertical)
    if not region or (layout is not None and layout.name not in ("vertical", "horizontal")):
        return False
    area = 0
    for child in widget.children:
        if not isinstance(child, Widget) or not child.display:
            continue
        child_region = child.region
        if child_region and not region.contains_region(child_region):
            return False
        area += child_region.area
    return area == region.area


def tiled_lines(widget: Widget, crop: Region) -> list[Strip] | None:
    """One shared blank line per row of ``crop`` when the children cover ``widget``; None: draw it as usual."""
    if not children_cover(widget):
        return None
    return [Strip.blank(crop.width, widget.rich_style)] * crop.height


# (Each class derives from Textual's container first: Textual applies a parent class's DEFAULT_CSS, here the
# layout, only along the first base.)
class TiledHorizontal(Horizontal):
    """A ``Horizontal`` whose children fill it (a list beside its detail pane, a row of filter boxes)."""

    def render_lines(self, crop: Region) -> list[Strip]:
        lines = tiled_lines(self, crop)
        return super().render_lines(crop) if lines is None else lines


class TiledVertical(Vertical):
    """A ``Vertical`` whose children fill it (a table under its hidden filter box)."""

    def render_lines(self, crop: Region) -> list[Strip]:
        lines = tiled_lines(self, crop)
        return super().render_lines(crop) if lines is None else lines
