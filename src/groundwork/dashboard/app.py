"""`groundwork serve`: a live, read-only web view of the runs in a folder.

Pages are rendered on the server from each run's store; a little JavaScript re-fetches
the live part of a page every few seconds, so a running search is watched as it works.
Nothing is written unless the server was started with writes allowed, and then only by a
request carrying the token printed at start-up."""

from __future__ import annotations

import secrets
from pathlib import Path

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from groundwork.analysis.archive_grid import archive_grid
from groundwork.analysis.details import load_details
from groundwork.analysis.report import archive_descriptors, diff_html, portfolio_rows
from groundwork.analysis.summary import summarize
from groundwork.records import TERMINAL_JOB_STATES, JobState
from groundwork.redaction import redact
from groundwork.run_lock import RunBusy, controller_lock
from groundwork.store import ArtifactStore, RunStore, StoreError
from groundwork.store.sqlite_store import DB_NAME

TEMPLATES = Path(__file__).parent / "templates"
LOG_TAIL_BYTES = 16_000
POLL_MS = 2000


class DashboardData:
    """Reads runs for the pages; every request opens (and closes) its own store."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)

    def run_ids(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        folders = [p.parent for p in self.runs_dir.glob(f"*/{DB_NAME}")]
        return [p.name for p in sorted(folders, key=lambda p: p.stat().st_mtime, reverse=True)]

    def open(self, run_id: str) -> RunStore:
        folder = self.runs_dir / run_id
        if "/" in run_id or run_id.startswith(".") or not (folder / DB_NAME).is_file():
            raise HTTPException(404, f"no run {run_id!r} in {self.runs_dir}")
        return RunStore(folder)


def _tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    if not path.is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - limit))
        text = fh.read().decode("utf-8", errors="replace")
    return ("[... earlier lines cut ...]\n" if size > limit else "") + text


def job_log(store: RunStore, job_id: str) -> str:
    job = store.job(job_id)
    if not job.job_dir:
        return f"(job {job_id} is {job.state}: no log yet)"
    log = _tail(ArtifactStore(store.run_dir).path(job.job_dir) / "job.log")
    return redact(log) if log else "(the log is empty so far)"


def create_app(runs_dir: Path, *, allow_writes: bool = False, token: str | None = None) -> Starlette:
    if allow_writes and not token:
        raise ValueError("writes need a token: pass one, or let `groundwork serve --allow-writes` make one")
    data = DashboardData(runs_dir)
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    templates.globals.update(poll_ms=POLL_MS, allow_writes=allow_writes)

    def page(name: str, **context) -> HTMLResponse:
        return HTMLResponse(templates.get_template(name).render(**context))

    def runs_context() -> dict:
        runs = []
        for run_id in data.run_ids():
            try:
                store = data.open(run_id)
            except (HTTPException, StoreError):
                continue
            try:
                runs.append(summarize(store))
            finally:
                store.close()
        return {"runs": runs, "runs_dir": data.runs_dir.resolve()}

    def index(request: Request) -> Response:
        return page("index.html", **runs_context())

    def index_live(request: Request) -> Response:
        return page("index_live.html", **runs_context())

    def run_context(run_id: str) -> dict:
        store = data.open(run_id)
        try:
            config = store.run_info().config
            grid, portfolio = None, []
            if config.get("archive") == "map-elites" or config.get("ideator_llms") or config.get("implementer_llms"):
                details = load_details(store)  # the report's own grid and portfolio rows
                summary = details.summary
                if config.get("archive") == "map-elites":
                    grid = archive_grid(details, archive_descriptors(details))
                portfolio = portfolio_rows(details)
            else:
                summary = summarize(store)
            version = len(store.events())
            jobs = store.jobs()
            ideas = {i.id: i for i in store.ideas()}
            return {
                "s": summary,
                "jobs": jobs,
                "ideas": ideas,
                "version": version,
                "run_id": run_id,
                "grid": grid,
                "portfolio": portfolio,
            }
        finally:
            store.close()

    def run_page(request: Request) -> Response:
        return page("run.html", **run_context(request.path_params["run_id"]))

    def run_live(request: Request) -> Response:
        return page("run_live.html", **run_context(request.path_params["run_id"]))

    def best_png(request: Request) -> Response:
        from groundwork.analysis import plots

        store = data.open(request.path_params["run_id"])
        try:
            details = load_details(store)
        finally:
            store.close()
        png = plots.best_so_far_by_idea([details])
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})  # ?v= changes

    def idea_context(run_id: str, idea_id: str) -> dict:
        store = data.open(run_id)
        try:
            try:
                store.idea(idea_id)
            except StoreError as exc:
                raise HTTPException(404, str(exc)) from None
            details = load_details(store)
            detail = next(d for d in details.all if d.idea.id == idea_id)
            log = job_log(store, detail.job.id) if detail.job else "(no job: the patch never applied)"
            live = detail.job is not None and detail.job.state not in TERMINAL_JOB_STATES
            return {
                "run_id": run_id,
                "s": details.summary,
                "d": detail,
                "diff": Markup(diff_html(detail.diff)),
                "log": log,
                "live": live,
            }
        finally:
            store.close()

    def idea_page(request: Request) -> Response:
        return page("idea.html", **idea_context(request.path_params["run_id"], request.path_params["idea_id"]))

    def idea_live(request: Request) -> Response:
        return page("idea_live.html", **idea_context(request.path_params["run_id"], request.path_params["idea_id"]))

    def api_run(request: Request) -> Response:
        ctx = run_context(request.path_params["run_id"])
        s = ctx["s"]
        return JSONResponse(
            {
                "run_id": s.run_id,
                "status": s.status,
                "epoch": s.epoch,
                "jobs": s.jobs,
                "best": s.best.metric if s.best else None,
                "baseline": s.baseline.metric if s.baseline else None,
                "ideas": [{"id": r.id, "status": r.status, "metric": r.metric} for r in s.rows],
                "version": ctx["version"],
            }
        )

    def api_log(request: Request) -> Response:
        store = data.open(request.path_params["run_id"])
        try:
            return PlainTextResponse(job_log(store, request.path_params["job_id"]))
        except StoreError as exc:
            raise HTTPException(404, str(exc)) from None
        finally:
            store.close()

    def cancel_job(request: Request) -> Response:
        """Cancel a queued job of a run that nobody is driving (a stopped run, before it is
        resumed): taking the run's controller lock guarantees no scheduler leases it meanwhile."""
        if not allow_writes:
            return JSONResponse(
                {"error": "this dashboard is read-only: restart it with `groundwork serve --allow-writes`"}, 403
            )
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given or not secrets.compare_digest(given, token or ""):
            return JSONResponse({"error": "a valid token is needed (Authorization: Bearer TOKEN)"}, 401)
        store = data.open(request.path_params["run_id"])
        job_id = request.path_params["job_id"]
        try:
            try:
                job = store.job(job_id)
            except StoreError as exc:
                return JSONResponse({"error": str(exc)}, 404)
            if job.state != JobState.QUEUED:
                return JSONResponse({"error": f"job {job_id} is {job.state}: only queued jobs can be cancelled"}, 409)
            try:
                with controller_lock(store.run_dir):
                    store.transition_job(job_id, JobState.CANCELLED, "cancelled from the dashboard")
            except RunBusy as exc:
                return JSONResponse({"error": f"{exc}; stop it (Ctrl+C) before cancelling its jobs"}, 409)
            return JSONResponse({"job": job_id, "state": "cancelled"})
        finally:
            store.close()

    routes = [
        Route("/", index),
        Route("/live", index_live),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/live", run_live),
        Route("/runs/{run_id}/best.png", best_png),
        Route("/runs/{run_id}/ideas/{idea_id}", idea_page),
        Route("/runs/{run_id}/ideas/{idea_id}/live", idea_live),
        Route("/api/runs/{run_id}", api_run),
        Route("/api/runs/{run_id}/jobs/{job_id}/log", api_log),
        Route("/api/runs/{run_id}/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    ]
    return Starlette(routes=routes)
