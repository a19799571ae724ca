"""The one look of gitops-tui's centred dialogs (confirmation, secret prompt, help)."""

from __future__ import annotations

from typing import TypeVar

from textual.screen import ModalScreen

ResultType = TypeVar("ResultType")


class DialogScreen(ModalScreen[ResultType]):
    """A modal screen whose body is a centred, bordered box with the class ``dialog`` and a one-line
    key hint with the class ``dialog-hint``; subclasses add only what is theirs."""

    DEFAULT_CSS = """
    DialogScreen {
        align: center middle;
        & > .dialog {
            width: 76;
            max-width: 100%;
            height: auto;
            max-height: 100%;
            border: thick $primary;
            border-title-style: bold;
            background: $panel;
            padding: 0 1;
        }
        & .dialog-hint { color: $text-muted; height: 1; }
    }
    """
