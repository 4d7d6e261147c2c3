"""Resume CrewAI flows paused by :class:`hitlhook.crewai.HitlFeedbackProvider` once their
hitlhook checkpoint is decided. Works from any process that shares the flow persistence.

Command line::

    python -m hitlhook.resume myapp.flows:ReviewFlow --flow-id <id>      # wait for one flow
    python -m hitlhook.resume myapp.flows:ReviewFlow --all               # resume the decided ones
    python -m hitlhook.resume myapp.flows:ReviewFlow --watch             # keep doing that

Options: ``--url`` (``HITLHOOK_URL``), ``--db`` (the flows' SQLite persistence file; default
CrewAI's own ``flow_states.db``), ``--timeout``, ``--interval``, ``--outcome continue=approved``.
The API key comes from ``HITLHOOK_API_KEY`` (or ``WEBHOOK_API_KEY``), never from argv. Each
resumed flow prints one JSON line.

Routing (see :mod:`hitlhook.crewai.routing`): ``continue``/``stop``/``skip`` go to the
flow's ``emit`` labels through :class:`~hitlhook.crewai.ExactLabelLLM` (no network LLM);
``revise`` carries the reviewer's text; ``stop`` on a flow with no stop label ends it
without resuming.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from .client import HitlClient
from .errors import HitlError
from .models import Decision
from ._protocol import settled_decision

__all__ = ["ResumeResult", "resume_flow", "resume_ready", "pending_flow_ids", "load_flow_class", "main"]

log = logging.getLogger("hitlhook.resume")


@dataclass
class ResumeResult:
    """What happened to one paused flow."""

    flow_id: str
    checkpoint_id: str
    status: str
    """``resumed`` (finished), ``paused_again``, ``stopped`` (ended without resuming) or
    ``pending`` (no decision yet)."""
    action: str | None = None
    outcome: str | None = None
    feedback: str | None = None
    result: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "result"}
        res = self.result
        if res is not None and not isinstance(res, (str, int, float, bool, list, dict)):
            res = str(res)
        out["result"] = res
        return out


def _persistence(db: str | None, persistence: Any) -> Any:
    if persistence is not None:
        return persistence
    if db:
        from crewai.flow.persistence import SQLiteFlowPersistence

        return SQLiteFlowPersistence(db)
    from crewai.flow.persistence.factory import default_flow_persistence

    return default_flow_persistence()


def resume_flow(
    flow_cls: Any,
    flow_id: str,
    *,
    client: HitlClient,
    persistence: Any = None,
    db: str | None = None,
    outcomes: Mapping[str, str] | None = None,
    timeout: float | None = None,
    wait: bool = True,
    flow_kwargs: Mapping[str, Any] | None = None,
) -> ResumeResult:
    """Resume one paused flow once its checkpoint is decided.

    Args:
        flow_cls: the Flow subclass the flow was started from.
        flow_id: the paused flow's id (``state.id``; also the checkpoint's kickoff id).
        client: a :class:`~hitlhook.HitlClient` with an API key.
        persistence / db: where the flow was saved (default: CrewAI's default persistence).
        outcomes: explicit action -> ``emit`` label mapping.
        timeout: seconds to wait for the decision (``wait=True``); ``None`` waits forever.
        wait: False to check once and return ``status="pending"`` if undecided.
        flow_kwargs: extra constructor arguments for ``from_pending``.

    Raises:
        ValueError: nothing is pending for ``flow_id``.
        DecisionTimeout, CheckpointClosed, ApiError: from the wait.
    """
    from crewai.flow.async_feedback import HumanFeedbackPending

    from .crewai.flows import checkpoint_id_for
    from .crewai.labels import ExactLabelLLM
    from .crewai.routing import route_decision

    store = _persistence(db, persistence)
    flow = flow_cls.from_pending(flow_id, store, **dict(flow_kwargs or {}))
    ctx = flow.pending_feedback
    checkpoint_id = checkpoint_id_for(ctx)
    decision: Decision | None
    if wait:
        decision = client.wait_for_decision(checkpoint_id, timeout=timeout, raise_on_stop=False)
    else:
        decision = settled_decision(client.get_checkpoint(checkpoint_id), raise_on_stop=False)
        if decision is None:
            return ResumeResult(flow_id, checkpoint_id, "pending")
    route = route_decision(decision, ctx.emit, ctx.default_outcome, outcomes)
    if not route.resume:
        store.clear_pending_feedback(flow_id)
        log.info("flow %s stopped by %s", flow_id, decision.decided_by or "a reviewer")
        return ResumeResult(flow_id, checkpoint_id, "stopped", decision.action, None, decision.feedback)
    if ctx.emit and route.outcome is not None:
        # The serialized collapse LLM does not survive a process boundary; use a local one
        # that returns exactly the decided label.
        ctx.llm = ExactLabelLLM(fixed=route.outcome)
    result = flow.resume(route.feedback)
    status = "paused_again" if isinstance(result, HumanFeedbackPending) else "resumed"
    log.info("flow %s %s (%s -> %s)", flow_id, status, decision.action, route.outcome)
    return ResumeResult(flow_id, checkpoint_id, status, decision.action, route.outcome, route.feedback, result)


def pending_flow_ids(db_path: str, flow_cls: Any | None = None) -> list[str]:
    """Ids of flows waiting for feedback in a CrewAI SQLite persistence file, oldest first,
    optionally only those started from ``flow_cls``."""
    if not os.path.exists(db_path):
        return []
    want = f"{flow_cls.__module__}.{flow_cls.__name__}" if flow_cls is not None else None
    with sqlite3.connect(db_path) as conn:
        try:
            rows = conn.execute("SELECT flow_uuid, context_json FROM pending_feedback ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            return []
    ids = []
    for flow_uuid, context_json in rows:
        if want is not None:
            try:
                cls_name = json.loads(context_json).get("flow_class", "")
            except ValueError:
                continue
            if cls_name.rsplit(".", 1)[-1] != want.rsplit(".", 1)[-1]:
                continue
        ids.append(flow_uuid)
    return ids


def _default_db() -> str:
    from crewai_core.paths import db_storage_path  # type: ignore[import-not-found]

    return os.path.join(db_storage_path(), "flow_states.db")


def resume_ready(
    flow_cls: Any,
    *,
    client: HitlClient,
    db: str | None = None,
    outcomes: Mapping[str, str] | None = None,
) -> list[ResumeResult]:
    """Resume every paused flow of ``flow_cls`` whose checkpoint is decided (no waiting).
    A flow whose resume fails is logged and skipped; the others still run."""
    path = db or _default_db()
    results = []
    for flow_id in pending_flow_ids(path, flow_cls):
        try:
            res = resume_flow(flow_cls, flow_id, client=client, db=path, outcomes=outcomes, wait=False)
        except (HitlError, ValueError) as exc:
            log.warning("cannot resume flow %s: %s", flow_id, exc)
            continue
        if res.status != "pending":
            results.append(res)
    return results


def load_flow_class(ref: str) -> Any:
    """``package.module:Class`` or ``path/to/file.py:Class`` (the file's folder is put on
    ``sys.path``, as when running it as a script, so its sibling imports work)."""
    if ":" not in ref:
        raise ValueError("flow reference must look like module:Class or file.py:Class")
    target, _, name = ref.rpartition(":")
    if target.endswith(".py"):
        folder = os.path.dirname(os.path.abspath(target))
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(target))[0], target)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot load {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    return getattr(module, name)


def _parse_outcomes(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        action, sep, label = pair.partition("=")
        if not sep:
            raise SystemExit(f"--outcome wants action=label, got {pair!r}")
        out[action.strip()] = label.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m hitlhook.resume`` (and ``hitlhook-resume``).

    Standard output carries only the JSON result lines; CrewAI's console panels go to stderr.
    """
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        return _main(argv, out)


def _main(argv: list[str] | None, out: Any) -> int:
    parser = argparse.ArgumentParser(prog="python -m hitlhook.resume", description=__doc__.split("\n\n")[0])
    parser.add_argument("flow", help="the Flow class, as module:Class or path/file.py:Class")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--flow-id", help="resume this flow (waits for its decision)")
    which.add_argument("--all", action="store_true", help="resume every decided paused flow once")
    which.add_argument("--watch", action="store_true", help="keep resuming decided flows")
    parser.add_argument("--url", default=None, help="hitlhook base URL (default HITLHOOK_URL)")
    parser.add_argument("--db", default=None, help="CrewAI flow persistence SQLite file")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for a decision")
    parser.add_argument("--interval", type=float, default=2.0, help="--watch: seconds between scans")
    parser.add_argument("--outcome", action="append", default=[], help="action=label, e.g. stop=rejected")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    if args.flow_id is None and not args.all and not args.watch:
        parser.error("give --flow-id, --all or --watch")

    flow_cls = load_flow_class(args.flow)
    outcomes = _parse_outcomes(args.outcome)
    with HitlClient(args.url) as client:
        if args.flow_id:
            try:
                res = resume_flow(flow_cls, args.flow_id, client=client, db=args.db, outcomes=outcomes, timeout=args.timeout)
            except (HitlError, ValueError) as exc:
                out.write(json.dumps({"flow_id": args.flow_id, "status": "error", "error": str(exc)}) + "\n")
                out.flush()
                return 1
            out.write(json.dumps(res.to_json(), default=str) + "\n")
            out.flush()
            return 0
        while True:
            for res in resume_ready(flow_cls, client=client, db=args.db, outcomes=outcomes):
                out.write(json.dumps(res.to_json(), default=str) + "\n")
            out.flush()
            if not args.watch:
                return 0
            time.sleep(args.interval)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
