"""The yardstick for start-up: a minimal Textual app showing one line (and the footer the timer looks for).

Run as a script (``python bench/minimal_app.py``) so that nothing but Textual is imported.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Static


class MinimalApp(App[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def compose(self) -> ComposeResult:
        yield Static("gitops-tui start-up yardstick: one line")
        yield Footer()


if __name__ == "__main__":
    MinimalApp().run()
