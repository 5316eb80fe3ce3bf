"""RQ's scheduler on a thread of the worker process, so it dies with its worker.

`work(with_scheduler=True)` forks the scheduler into a child that a SIGKILL of
the worker leaves behind, still holding the dead worker's connection (blocked
in BLMOVE, so Redis hands it the next batch) and the scheduler lock (so the
restarted worker runs without one). On a thread it shares the process's fate
but not its connection: it opens its own. Each tick it (re)takes the lock when
free or held by a scheduler whose process is gone, and a Redis error only
skips the tick: it survives a Redis restart and carries on when Redis is back.
"""
from __future__ import annotations

import contextlib
import logging
import socket
import threading

import redis
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler

from workers import recovery

log = logging.getLogger("lessonserver.workers")

TICK = 1.0                  # seconds between looks at the scheduled registries (RQ's default)
REDIS_TIMEOUT = 5.0


class SchedulerThread:
    def __init__(self, redis_url: str, queues: tuple[str, ...], tick: float = TICK) -> None:
        self._queues = queues
        self._tick = tick
        self._stop = threading.Event()
        self._connection = redis.Redis.from_url(redis_url, socket_timeout=REDIS_TIMEOUT,
                                                socket_connect_timeout=REDIS_TIMEOUT)
        self.scheduler = RQScheduler(list(queues), connection=self._connection, interval=int(tick))
        self._thread = threading.Thread(target=self._run, name="rq-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        scheduler, down = self.scheduler, False
        while not self._stop.is_set():
            try:
                if scheduler.acquired_locks != set(self._queues):
                    scheduler.register_birth()    # first, so no one takes us for dead
                    self._free_locks_of_dead_schedulers()
                    scheduler.acquire_locks()
                if scheduler.acquired_locks:
                    scheduler.heartbeat()
                    scheduler.enqueue_scheduled_jobs()
                if down:
                    log.info("scheduler back on Redis")
                down = False
            except redis.RedisError as exc:
                if not down:
                    log.warning("scheduler lost Redis; retrying", extra={"fields": {"error": str(exc)[:200]}})
                down = True
                scheduler._acquired_locks = set()   # retake (or find taken) once Redis answers
            except Exception:  # one bad scheduled job must not end scheduling
                log.exception("scheduler tick failed")
            self._stop.wait(self._tick)
        try:
            scheduler.stop()                         # releases the locks and its record
        except redis.RedisError:
            pass
        self._connection.close()

    def _free_locks_of_dead_schedulers(self) -> None:
        here = socket.gethostname()
        for queue in self._queues:
            lock = RQScheduler.get_locking_key(queue)
            owner = self._connection.get(lock)
            if owner is None:
                continue
            name = owner.decode()
            holder = recovery.holder(self._connection, SCHEDULER_KEY_TEMPLATE % name, name)
            if recovery.is_dead(holder, here=here, pid_alive=recovery.pid_alive,
                                me=self.scheduler.name):
                # Only if still that owner's: a live scheduler may have taken it meanwhile.
                with self._connection.pipeline() as pipe, contextlib.suppress(redis.WatchError):
                    pipe.watch(lock)
                    if pipe.get(lock) == owner:
                        pipe.multi()
                        pipe.delete(lock)
                        pipe.execute()
                        log.info("lock of a dead scheduler freed", extra={"fields": {"queue": queue}})
