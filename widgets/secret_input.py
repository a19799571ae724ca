"""A masked field that keeps what is typed out of every ``str``.

Textual's ``Input(password=True)`` only masks the rendering: its value is a ``str``
rebuilt on every keystroke and copied into messages. Here each typed character's
UTF-8 bytes go into a zero-filled buffer of fixed capacity in locked memory
(``phases.memory.LockedBuffer``: never swapped, not in core dumps, zeros in a forked
child); growing copies it into a larger one and zeroes the old. Only the length is
ever published. Single characters are cached singletons in CPython, so key-by-key
capture leaves no copy of the whole value. A paste arrives as one ``str``: its
characters are appended one by one and the ``str`` itself is zeroed when nobody
else holds it (else the memory sweep after phase 2 finds what is left).
"""

from __future__ import annotations

from typing import ClassVar, Final

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widget import Widget

from phases.memory import LockedBuffer, wipe_str_object
from phases.secrets import SecretValue, pattern_mismatch

MASK: Final = "•"
INITIAL_CAPACITY: Final = 256  # bytes; doubled (copy, then zero the old buffer) when exceeded
MAX_SECRET_BYTES: Final = 64 * 1024


def _zero(buffer: memoryview) -> None:
    # Slice assignment of the same length writes in place: no reallocation, no copy left behind.
    buffer[:] = bytes(len(buffer))


class SecretInput(Widget, can_focus=True):
    """One secret: typed or pasted into a wipeable buffer, shown as one bullet per character."""

    ALLOW_SELECT = False  # nothing here is worth selecting, and selections feed the clipboard

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("backspace", "delete_left", "Delete", show=False, id="secret_input.delete_left"),
        Binding("ctrl+u", "clear", "Clear", show=False, id="secret_input.clear"),
        Binding("enter", "submit", "Submit", show=False, id="secret_input.submit"),
        # Copy and cut must never reach the screen's copy_text or the app's handlers.
        Binding("ctrl+c,super+c", "refuse_copy", show=False, id="secret_input.no_copy"),
        Binding("ctrl+x,super+x", "refuse_copy", show=False, id="secret_input.no_cut"),
    ]

    DEFAULT_CSS = """
    SecretInput {
        height: 1;
        width: 1fr;
        background: $boost;
        padding: 0 1;
        &:focus { background: $surface-lighten-1; }
        & > .secret-input--cursor { text-style: reverse; }
        & > .secret-input--placeholder { color: $text-muted; text-style: italic; }
    }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"secret-input--cursor", "secret-input--placeholder"}

    class Changed(Message):
        """The number of characters changed (the value itself is never sent)."""

        def __init__(self, secret_input: SecretInput, length: int) -> None:
            super().__init__()
            self.secret_input = secret_input
            self.length = length

        @property
        def control(self) -> SecretInput:
            return self.secret_input

    class Submitted(Message):
        """Enter was pressed in the field."""

        def __init__(self, secret_input: SecretInput) -> None:
            super().__init__()
            self.secret_input = secret_input

        @property
        def control(self) -> SecretInput:
            return self.secret_input

    def __init__(
        self,
        secret_name: str,
        *,
        placeholder: str = "type or paste",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.secret_name = secret_name
        self.placeholder = placeholder
        self._locked = LockedBuffer(INITIAL_CAPACITY)
        self._buffer = self._locked.view[:INITIAL_CAPACITY]  # zero-filled; INITIAL_CAPACITY bytes in use
        self._used = 0  # bytes of _buffer in use
        self._char_sizes: list[int] = []  # UTF-8 length of each character, for backspace

    # -- public API --------------------------------------------------------------------------

    @property
    def length(self) -> int:
        """Number of characters held."""
        return len(self._char_sizes)

    def take(self) -> SecretValue:
        """Hand over the value in a SecretValue of its own; the field is empty afterwards."""
        value = self._copy()
        self._reset()
        return value

    def mismatches(self, pattern: str) -> bool:
        """True when ``pattern`` is set and the value does not match it (checked on a wiped copy)."""
        probe = self._copy()
        try:
            return pattern_mismatch(probe, pattern)
        finally:
            probe.wipe()

    def wipe(self) -> None:
        """Zero what was typed and empty the field."""
        self._reset()

    # -- input -------------------------------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        if event.is_printable and event.character is not None:
            event.stop()
            event.prevent_default()  # no binding (app or screen) sees a typed character
            self._append(event.character)
            self._changed()

    def on_paste(self, event: events.Paste) -> None:
        event.stop()
        event.prevent_default()
        text = event.text
        event.text = ""  # the event may be logged or kept by Textual: keep no reference there
        for character in text:  # one character at a time: no bytes copy of the whole paste
            if character.isprintable():
                self._append(character)
        wipe_str_object(text, max_refcount=1)  # only when this frame holds the last reference
        del text
        self._changed()

    def action_delete_left(self) -> None:
        if not self._char_sizes:
            return
        size = self._char_sizes.pop()
        start = self._used - size
        self._buffer[start : self._used] = bytes(size)
        self._used = start
        self._changed()

    def action_clear(self) -> None:
        self._reset()

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self))

    def action_refuse_copy(self) -> None:
        self.notify("Copy and cut are disabled in secret fields.", severity="warning", timeout=3)

    def on_unmount(self) -> None:
        self._zero_all()

    # -- internals ---------------------------------------------------------------------------

    def _append(self, character: str) -> None:
        encoded = character.encode()
        size = len(encoded)
        if self._used + size > MAX_SECRET_BYTES:
            self.app.bell()
            return
        if self._used + size > len(self._buffer):
            self._grow(max(len(self._buffer) * 2, self._used + size))
        self._buffer[self._used : self._used + size] = encoded
        self._used += size
        self._char_sizes.append(size)

    def _copy(self) -> SecretValue:
        # One allocation of the final size: nothing is left behind by a growing buffer.
        with memoryview(self._buffer) as view:
            return SecretValue.from_bytes(self.secret_name, view[: self._used])

    def _grow(self, capacity: int) -> None:
        size = min(capacity, MAX_SECRET_BYTES)
        locked = LockedBuffer(size)
        larger = locked.view[:size]
        larger[: self._used] = self._buffer[: self._used]
        _zero(self._buffer)
        self._buffer.release()
        self._locked.close()
        self._locked, self._buffer = locked, larger

    def _zero_all(self) -> None:
        _zero(self._buffer)
        self._used = 0
        self._char_sizes.clear()

    def _reset(self) -> None:
        had_value = bool(self._char_sizes)
        self._zero_all()
        if had_value:
            self._changed()

    def _changed(self) -> None:
        self.refresh()
        self.post_message(self.Changed(self, len(self._char_sizes)))

    def render(self) -> Text:
        count = len(self._char_sizes)
        room = max(self.content_region.width - 1, 1)  # one cell for the cursor
        if count == 0 and not self.has_focus:
            return Text(
                self.placeholder,
                self.get_component_rich_style("secret-input--placeholder", partial=True),
            )
        if count <= room:
            masked = MASK * count
        elif room > 8:
            # Too long for the field: keep the count readable instead of an endless row of bullets.
            shown = room - 8
            masked = f"{MASK * shown} +{count - shown}"
        else:
            masked = f"{count}{MASK}"
        text = Text(masked)
        if self.has_focus:
            text.append(" ", self.get_component_rich_style("secret-input--cursor", partial=True))
        return text

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
