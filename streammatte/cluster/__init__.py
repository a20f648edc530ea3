"""Scale-out: the chain run per file, or per segment of a long video, on a Ray cluster.

- :mod:`.work`: what one worker does with one task (matte a file or a still, later a segment)
  and what it hands back; free of Ray, so it runs and is tested without a cluster;
- :mod:`.executor`: the Ray side: connecting, one stateful actor per worker that opens the
  engine once, retries through Ray's options when a worker is lost, the aggregated progress.

Only :mod:`.executor` imports ``ray`` (the ``streammatte[ray]`` extra), and nothing imports it
but the ``--ray`` branch of the commands, so ``import streammatte`` never loads Ray. Every
result goes through ``sinks.publish``: written under a temporary name beside its output and
published whole, so a lost worker or driver leaves no partial result.
"""

from __future__ import annotations

from .work import Outcome, Task, Worker, WorkerId

__all__ = ["Outcome", "Task", "Worker", "WorkerId"]
