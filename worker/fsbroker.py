"""kombu's filesystem transport (the embedded mode's broker), with each message whole before any
consumer can see it.

kombu 5.7 creates a message file under its final name, locks it, then writes; a consumer lists
the folder and reads without taking the lock. Under load a worker read an empty file and died on
its JSON, leaving its job waiting (seen in the demo). Here a message is written under a name no
consumer takes (a leading dot: consumers match `<stamp>.<queue>.msg`), then renamed into place,
which is atomic within one folder. No well-kept library offers this transport, hence our own.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

TRANSPORT = "worker.fsbroker:Transport"  # what Celery's broker_transport names for filesystem:// URLs


class Channel(filesystem.Channel):
    # The stubs' two supertypes disagree on the argument's name (message, payload): kombu's own
    # filesystem.Channel is the one overridden, and calls are positional.
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
