"""``Static.update`` that leaves the loop alone when it can: nothing when the content draws the same, and no layout
pass when the widget keeps its size.

``Static.update`` always asks for a layout pass: the screen's whole layout is computed again on the next frame, and
every scroll view on it refreshes its scrollbars (Textual's ``ScrollView._size_updated``: a 44-line scrollbar is
drawn through Rich's generic renderer, 3-5 ms). A view's summary line rewritten on each fleet refresh, or the header
rewritten on each view switch, paid that for text that was the same, or the same size.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

Content = str | Text


def same_content(a: object, b: object) -> bool:
    """Whether two contents (a Static's, a table cell's) draw the same. Rich's ``Text ==`` compares only the
    characters and spans, not the text's own style: ``Text("1.5%", style="bold red")`` equals ``Text("1.5%")``, so
    a cell or line turning red would never be redrawn."""
    if a is b:
        return True
    if isinstance(a, Text) and isinstance(b, Text):
        return (a.plain == b.plain and a.style == b.style and a.spans == b.spans and a.justify == b.justify
                and a.overflow == b.overflow and a.no_wrap == b.no_wrap and a.end == b.end)
    return type(a) is type(b) and not isinstance(a, Text) and a == b


def _shape(content: object, width: int, auto_width: bool) -> tuple[int, ...] | None:
    """What the widget's size depends on: the number of lines (and, for an auto width, each line's width). None:
    unknown (not text, or a line that may wrap), so a layout pass is needed."""
    if isinstance(content, Text):
        plain = content.plain
    elif isinstance(content, str):
        plain = content
    else:
        return None
    widths = tuple(cell_len(line) for line in plain.split("\n"))
    if width <= 0 or any(w > width for w in widths):
        return None
    return widths if auto_width else (len(widths),)


def update_static(widget: Static, content: Content) -> None:
    """Show ``content`` in ``widget``: skipped when it draws the same as what is shown, without a layout pass when
    neither the widget's height nor (for an auto width) its width can change."""
    old = widget.content
    if same_content(old, content):
        return
    styles = widget.styles
    # (no width or height rule: the widget fills its container, its size does not follow its content)
    auto_height = styles.height is not None and styles.height.is_auto
    auto_width = styles.width is not None and styles.width.is_auto
    layout = True
    if not (auto_height or auto_width):
        layout = False  # a fixed size: the content is cropped or wrapped inside it
    elif widget.is_mounted and widget.size.width > 0:
        width = widget.content_region.width
        before, after = _shape(old, width, auto_width), _shape(content, width, auto_width)
        layout = before is None or before != after
    widget.update(content, layout=layout)
