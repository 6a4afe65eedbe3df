"""MLflow calls that survive a tracking-server outage.

Every call goes through an :class:`Outbox`: it is tried a few times with back-off; if the
server still does not answer, the call is kept (in memory and in a spool file on disk) and
replayed, in order, before the next call or when :meth:`Outbox.flush` is called. A run created
during an outage gets a provisional id that later calls use; the replay maps it to the real
id. Training never waits on the tracking server for longer than the back-off.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

from orchestrator import stopping, stored_names

logger = logging.getLogger(__name__)

__all__ = ["Outbox", "replay_spool"]


class Outbox:
    """An ordered queue of MLflow calls in front of one :class:`MlflowClient`."""

    def __init__(
        self,
        client: MlflowClient,
        spool: Path | None = None,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        on_run_created: Callable[[str, str], None] | None = None,
    ) -> None:
        self.client = client
        self.spool = spool
        self.attempts = attempts
        self.backoff = backoff
        self.on_run_created = on_run_created
        self.ids: dict[str, str] = {}  # provisional run id -> real run id
        self.pending: list[dict[str, Any]] = []
        if spool is not None and spool.exists():
            self.pending = [json.loads(line) for line in spool.read_text().splitlines() if line]

    # ------------------------------------------------------------------ calls

    def create_run(self, experiment_id: str, tags: dict[str, str], run_name: str) -> str:
        """A run id: the real one, or a provisional one while the server is away."""
        run_id = f"{stored_names.PENDING_RUN_ID}{uuid.uuid4().hex}"
        self._submit(
            {
                "op": "create_run",
                "run": run_id,
                "experiment_id": experiment_id,
                "tags": tags,
                "run_name": run_name,
            }
        )
        return self.ids.get(run_id, run_id)

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: list[tuple[str, float, int, int]] = (),  # type: ignore[assignment]
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        self._submit(
            {
                "op": "log_batch",
                "run": run_id,
                "metrics": list(metrics),
                "params": params or {},
                "tags": tags or {},
            }
        )

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._submit({"op": "log_text", "run": run_id, "text": text, "file": artifact_file})

    def log_file(self, run_id: str, path: Path) -> None:
        """Upload a file; while the server is away, a copy waits beside the spool."""
        self._submit({"op": "log_file", "run": run_id, "path": str(path)}, keep_file=path)

    def log_input(self, run_id: str, dataset: dict[str, str], context: str) -> None:
        """Record a dataset (the fields of an MLflow ``Dataset`` entity) as an input of the run."""
        self._submit({"op": "log_input", "run": run_id, "dataset": dataset, "context": context})

    def set_terminated(self, run_id: str, status: str) -> None:
        self._submit({"op": "set_terminated", "run": run_id, "status": status})

    # ------------------------------------------------------------------ machinery

    def flush(self, *, deadline: float = 0.0, stoppable: bool = True) -> bool:
        """Replay kept calls; retry until ``deadline`` (``time.monotonic()``) if given, or
        until a stop is requested (:mod:`stopping`) unless not ``stoppable``.

        Returns whether nothing is left.
        """
        while True:
            while self.pending:
                try:
                    self._execute(self.pending[0])
                except Exception as exc:  # the server is still away
                    if time.monotonic() >= deadline:
                        logger.debug("tracking store unreachable: %s", exc)
                        return False
                    pause = min(self.backoff * 4, max(0.0, deadline - time.monotonic()))
                    if not stoppable:
                        time.sleep(pause)
                    elif not stopping.sleep(pause):
                        # A process asked to stop leaves the rest in its spool (the sweep's
                        # parent sends it).
                        return False
                    break
                self.pending.pop(0)
                self._persist()
            else:
                return True

    def _submit(self, call: dict[str, Any], keep_file: Path | None = None) -> None:
        if not self.flush():
            self._keep(call, keep_file)
            return
        for attempt in range(self.attempts):
            try:
                self._execute(call)
                return
            except Exception as exc:
                if attempt + 1 == self.attempts:
                    logger.warning("tracking store unreachable, keeping the call: %s", exc)
                else:
                    time.sleep(self.backoff * 2**attempt)
        self._keep(call, keep_file)

    def _keep(self, call: dict[str, Any], keep_file: Path | None) -> None:
        if keep_file is not None and self.spool is not None:
            # The caller's file may be temporary; keep our own copy until it is sent.
            folder = self.spool.with_suffix(".files") / uuid.uuid4().hex
            folder.mkdir(parents=True)
            copy = folder / keep_file.name  # the artifact keeps its name
            shutil.copyfile(keep_file, copy)
            call = {**call, "path": str(copy), "owned": True}
        self.pending.append(call)
        self._persist()

    def _persist(self) -> None:
        if self.spool is None:
            return
        if not self.pending:
            self.spool.unlink(missing_ok=True)
            return
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.spool.with_suffix(".tmp")
        temporary.write_text("".join(json.dumps(call) + "\n" for call in self.pending))
        os.replace(temporary, self.spool)

    def _run(self, run_id: str) -> str:
        return self.ids.get(run_id, run_id)

    def _execute(self, call: dict[str, Any]) -> None:
        op = call["op"]
        run_id = self._run(call["run"])
        if op == "create_run":
            if call["run"] in self.ids:
                return
            run = self.client.create_run(
                call["experiment_id"], tags=call["tags"], run_name=call["run_name"]
            )
            self.ids[call["run"]] = run.info.run_id
            # Kept calls name the run by its real id from now on, so the spool file stays
            # readable by another process (the sweep's parent replays a dead worker's spool).
            for kept in self.pending:
                if kept["run"] == call["run"]:
                    kept["run"] = run.info.run_id
            if self.on_run_created is not None:
                self.on_run_created(call["run"], run.info.run_id)
        elif op == "log_batch":
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, v, ts, step) for k, v, ts, step in call["metrics"]],
                params=[Param(k, v) for k, v in call["params"].items()],
                tags=[RunTag(k, v) for k, v in call["tags"].items()],
            )
        elif op == "log_text":
            self.client.log_text(run_id, call["text"], call["file"])
        elif op == "log_file":
            self.client.log_artifact(run_id, call["path"])
            if call.get("owned"):
                shutil.rmtree(Path(call["path"]).parent, ignore_errors=True)
        elif op == "log_input":
            dataset = DatasetInput(
                Dataset(**call["dataset"]),
                tags=[InputTag(stored_names.INPUT_TAG_CONTEXT, call["context"])],
            )
            self.client.log_inputs(run_id, datasets=[dataset])
        elif op == "set_terminated":
            self.client.set_terminated(run_id, call["status"])
        else:
            raise ValueError(f"unknown outbox call {op!r}")


def replay_spool(client: MlflowClient, spool: Path, *, deadline: float) -> bool:
    """Send what a worker that has exited left in its spool file; True when all was sent."""
    return Outbox(client, spool).flush(deadline=deadline)
