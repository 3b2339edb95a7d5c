"""Dramatiq's dead letters on Redis: list them, and move one back onto its queue exactly once.

The layout is the Redis broker's own (dramatiq/brokers/redis/dispatch.lua): a message that exhausted its
retries is nacked into `<ns>:<queue>.XQ`, a sorted set of redis message ids scored by when they died (ms), with
the message JSON in the hash `<ns>:<queue>.XQ.msgs`. A waiting message is an id on the list `<ns>:<queue>` with
its JSON in `<ns>:<queue>.msgs`. A delayed retry dies under its canonical queue's XQ (never `.DQ.XQ`).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime

import redis

from adapters.broker import NAMESPACE
from core.commands import QUEUES
from core.replay import DeadLettersUnavailable, ReplayItem, dead_letter, replayed_message

log = logging.getLogger(__name__)

# Take the id out of the dead letters and push the new message in one step: two consoles replaying the same
# letter at once re-enqueue it once (ZREM answers 1 to only one of them).
_REPLAY = """
if redis.call("zrem", KEYS[1], ARGV[1]) == 0 then
    return 0
end
redis.call("hdel", KEYS[2], ARGV[1])
redis.call("hset", KEYS[3], ARGV[2], ARGV[3])
redis.call("rpush", KEYS[4], ARGV[2])
return 1
"""


class RedisDeadLetters:
    """The dead letters of the stage queues in one Redis broker namespace."""

    def __init__(self, client: redis.Redis, *, namespace: str = NAMESPACE, queues: tuple[str, ...] = QUEUES) -> None:
        self.client = client
        self.namespace = namespace
        self.queues = queues
        self._replay = client.register_script(_REPLAY)

    def _keys(self, queue: str) -> tuple[str, str, str, str]:
        base = f"{self.namespace}:{queue}"
        return f"{base}.XQ", f"{base}.XQ.msgs", f"{base}.msgs", base

    def dead_letters(self) -> list[ReplayItem]:
        """Every dead letter of every queue, oldest first per queue.

        Raises:
            DeadLettersUnavailable: Redis did not answer.
        """
        try:
            return self._read()
        except redis.RedisError as error:
            raise DeadLettersUnavailable(f"The broker's Redis did not answer ({type(error).__name__}), so dead "
                                         "letters can't be listed or replayed now.") from error

    def _read(self) -> list[ReplayItem]:
        items = []
        for queue in self.queues:
            xq, xq_msgs, _, _ = self._keys(queue)
            entries = self.client.zrange(xq, 0, -1, withscores=True)
            if not entries:
                continue
            payloads = self.client.hmget(xq_msgs, [member for member, _ in entries])
            for (member, score), raw in zip(entries, payloads, strict=True):
                redis_id = _text(member)
                if raw is None:  # expired by the broker's maintenance between the two reads
                    continue
                try:
                    message = json.loads(raw)
                except ValueError:
                    log.warning("dead letter %s on %s is not JSON; left as it is", redis_id, queue)
                    continue
                items.append(dead_letter(queue, redis_id, message,
                                         dead_at=datetime.fromtimestamp(score / 1000, tz=UTC)))
        return items

    def replay(self, item: ReplayItem, *, at: datetime) -> bool:
        """Put the dead letter back at the end of its queue with fresh retries; False when it is already gone
        (replayed by someone else, or expired)."""
        if item.queue is None or item.redis_id is None:
            raise ValueError(f"{item.key} is not a dead letter")
        xq, xq_msgs, queue_msgs, queue_list = self._keys(item.queue)
        try:
            raw = self.client.hget(xq_msgs, item.redis_id)
            if raw is None:
                return False
            new_id = str(uuid.uuid4())
            message = replayed_message(json.loads(raw), queue=item.queue, redis_id=new_id,
                                       at_ms=int(at.timestamp() * 1000))
            moved = self._replay(keys=[xq, xq_msgs, queue_msgs, queue_list],
                                 args=[item.redis_id, new_id, json.dumps(message, separators=(",", ":"))])
        except redis.RedisError as error:
            raise DeadLettersUnavailable(f"The broker's Redis stopped answering ({type(error).__name__}) while "
                                         f"replaying {item.key}: once Redis is back, look at the list again "
                                         "and replay what is still there.") from error
        if moved:
            log.info("replayed dead letter %s (%s) on %s as %s", message.get("message_id"), message.get("actor_name"),
                     item.queue, new_id)
        return bool(moved)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
