"""
The two pipes between the grading process and one part's process: requests go out on one, answers
come back on the other. Each pipe is served by a thread of its own, so the grading process never
blocks on a part's process that stops reading or never writes, and needs no select() (which Windows
does not offer for pipes): it waits on the channel a little at a time, and watches the part's time
and memory in between.
"""

import os
import queue
import threading

from .protocol import MAX_LINE, MAX_PAYLOAD, binary_mode, take_message, write_all

UNREAD_LIMIT = MAX_LINE + MAX_PAYLOAD + 2**20  # more than any message may be: the reader waits until it is taken


class Channel:
    """Owns both pipe ends it is given, and closes each when its thread is done with it."""

    def __init__(self, requests: int, answers: int):
        self.received = bytearray()  # what has arrived and was not taken yet, grown in place
        self.closed = False  # the part's process closed its end: nothing more will arrive
        self.changed = threading.Condition()
        self.outbox = queue.SimpleQueue()
        for fd in (requests, answers):
            binary_mode(fd)
        threading.Thread(target=self._write, args=(requests,), daemon=True).start()
        threading.Thread(target=self._read, args=(answers,), daemon=True).start()

    def send(self, *pieces: bytes) -> None:
        """Queue `pieces` to be written one after the other (protocol.encode); never blocks."""
        self.outbox.put(pieces)

    def take(self, timeout: float) -> tuple[dict, bytes] | None:
        """
        The next whole message (header, payload), or None if none has come within `timeout` seconds.
        Raises EOFError once the part's process has closed its end, ValueError for what is not a message.
        """
        with self.changed:
            message, self.received = take_message(self.received)
            if message is None and not self.closed:
                self.changed.wait(timeout)
                message, self.received = take_message(self.received)
            self.changed.notify_all()  # the reader may be waiting for room
        if message is None and self.closed:
            raise EOFError
        return message

    def close(self) -> None:
        """Once the part's process has been killed: the writer closes its pipe (the reader has its end of file)."""
        self.outbox.put(None)
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    def _write(self, fd: int) -> None:
        try:
            for pieces in iter(self.outbox.get, None):
                write_all(fd, *pieces)
        except OSError:  # the process ended (a broken pipe): the reader sees it end, and says so
            pass
        finally:
            os.close(fd)

    def _read(self, fd: int) -> None:
        try:
            while True:
                with self.changed:  # a process that sends more than any answer can be waits to be stopped
                    while len(self.received) > UNREAD_LIMIT and not self.closed:
                        self.changed.wait()
                    if self.closed:
                        return
                try:
                    data = os.read(fd, 2**20)
                except OSError:
                    data = b""
                with self.changed:
                    self.received += data
                    self.closed = self.closed or not data
                    self.changed.notify_all()
                if not data:
                    return
        finally:
            os.close(fd)
