"""A store whose conditional commit is switched off, as on a store without it."""

from __future__ import annotations

from typing import Any

from s3grid import MasterStore


def ignoring_if_match(store: MasterStore) -> None:
    """A store without atomic conditional writes: the master PUT ignores IfMatch."""
    client = store.bucket.client
    real = client.put_object

    def put_object(**kwargs: Any) -> Any:
        if kwargs["Key"] == store.cfg.master_key:
            kwargs.pop("IfMatch", None)
        return real(**kwargs)

    client.put_object = put_object


def without_lock(store: MasterStore) -> None:
    """A store that ignores IfMatch, where a colleague's save lands between the save's
    look at the master and its PUT (the race that look cannot close): a lost update."""
    ignoring_if_match(store)
    store.look_first = False
