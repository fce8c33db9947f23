"""The explorer's web app (Starlette): two pages, a small JSON/PNG API, static files from the package.

    GET  /                      model page            GET  /runs                 runs page
    GET  /api/models            pickable models       GET  /api/model?model=     z_dim, num_ws, layers, directions …
    GET  /api/render?seed=…     PNG (409 when a newer request superseded it)
    POST /api/save?seed=…       PNG + JSON written to the save folder
    GET  /api/runs              runs below --runs     GET  /api/run?id=          config, schedules, snapshots
    GET  /api/run/stats?id=&since=OFFSET              stats.jsonl records from a byte offset
    GET  /api/run/file?id=&path=fakes-….png           a file inside that run, nothing else
    GET  /api/status            render counters

Every refused parameter is a 4xx with {"error": sentence}; nothing a client sends can reach a 500. A file that
cannot be used (a damaged checkpoint, a broken run folder) is a 4xx with the sentence, or listed as broken; a
request that needs more memory than there is gets 507; a save past the session's budget gets 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ganforge.errors import GanforgeError
from ganforge.explore.coalesce import Superseded
from ganforge.explore.edits import check_edits, directions_info
from ganforge.explore.params import ParamError, RenderSettings, parse_settings
from ganforge.explore.paths import inside, safe_file
from ganforge.explore.render import digest, encode_png, image_array, out_of_memory, render, resolve_device
from ganforge.explore.runfiles import parse_since, read_stats
from ganforge.explore.runs import run_info, run_summary
from ganforge.explore.saves import save_render
from ganforge.explore.state import Explorer, Limits
from ganforge.tools.directions import load_directions

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
NO_STORE = {"Cache-Control": "no-store"}


def error(message: str, status: int = 400, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=NO_STORE)


def json_reply(data: dict, request: Request | None = None) -> Response:
    """JSON with an ETag; a request whose If-None-Match matches gets 304 and no body (cheap polling)."""
    body = json.dumps(data, allow_nan=False).encode()  # Run files are read with NaN as 'nan': strict JSON.
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    if request is not None and request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, **NO_STORE})
    return Response(body, media_type="application/json", headers={"ETag": etag, **NO_STORE})


class SameOriginOnly:
    """Refuse API calls that a browser marks as sent by another site's page (Sec-Fetch-Site, or a foreign Origin).

    With the loopback-only Host check this keeps web pages elsewhere from driving the renderer or the save button.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if headers.get("sec-fetch-site") in ("cross-site", "same-site") or (
                origin is not None and urlsplit(origin).netloc != headers.get("host")
            ):
                await error("cross-site request refused: use the explorer's own page", 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def query_dict(request: Request) -> dict[str, str]:
    """The query as a dict; a repeated name is refused rather than silently picking one value."""
    items = request.query_params.multi_items()
    seen = [k for k, _ in items]
    repeated = sorted({k for k in seen if seen.count(k) > 1})
    if repeated:
        raise ParamError(f"parameter(s) {', '.join(map(repr, repeated))} given more than once: pass each once")
    return dict(items)


async def settings_and_model(ex: Explorer, request: Request):
    query = query_dict(request)
    settings = parse_settings(query, ex.limits.max_grid)
    model = await run_in_threadpool(ex.model, query.get("model"))
    settings = model.check(settings, ex.limits.max_pixels)
    check_edits(settings, model, ex.directions)
    return model, settings


def render_png(ex: Explorer, model, settings: RenderSettings) -> tuple[bytes, str, float]:
    with ex.render_lock:
        t0 = time.perf_counter()
        array = image_array(render(model, settings, ex.directions))
        png = encode_png(array)
        ex.renders += 1
        return png, digest(array), (time.perf_counter() - t0) * 1000


def build_routes(ex: Explorer) -> list:
    async def page_model(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=NO_STORE)

    async def page_runs(request: Request) -> Response:
        return FileResponse(STATIC / "runs.html", headers=NO_STORE)

    async def api_status(request: Request) -> Response:
        return JSONResponse(ex.status(), headers=NO_STORE)

    async def api_models(request: Request) -> Response:
        keys = await run_in_threadpool(ex.model_keys)
        return JSONResponse(dict(models=keys, default=keys[0]["key"] if keys else None), headers=NO_STORE)

    async def api_model(request: Request) -> Response:
        model = await run_in_threadpool(ex.model, query_dict(request).get("model"))
        directions = directions_info(ex.directions, model)
        if directions is not None and ex.directions_path is not None:
            directions["file"] = ex.directions_path.name
        limits = dict(max_grid=ex.limits.max_grid, max_pixels=ex.limits.max_pixels)
        return JSONResponse(dict(model.info(), **limits, directions=directions), headers=NO_STORE)

    async def api_render(request: Request) -> Response:
        model, settings = await settings_and_model(ex, request)
        try:
            png, pixels, ms = await asyncio.wrap_future(ex.worker.submit(lambda: render_png(ex, model, settings)))
        except Superseded:
            return error("superseded: a newer render request replaced this one", 409, superseded=True)
        headers = {"X-Image-Digest": pixels, "X-Render-Ms": f"{ms:.1f}", "X-Render-Count": str(ex.renders), **NO_STORE}
        return Response(png, media_type="image/png", headers=headers)

    async def api_save(request: Request) -> Response:
        model, settings = await settings_and_model(ex, request)
        ex.saves.check()  # Past the count or the bytes: 429 before anything is rendered.

        def save() -> dict:
            with ex.render_lock:
                array = image_array(render(model, settings, ex.directions))
            return save_render(
                ex.save_dir,
                model.checkpoint,
                model.key,
                settings,
                array,
                digest(array),
                str(model.device),
                ex.saves,
                directions=ex.directions_path,
            )

        return JSONResponse(await run_in_threadpool(save), headers=NO_STORE)

    async def api_runs(request: Request) -> Response:
        runs = await run_in_threadpool(lambda: [run_summary(k, p) for k, p in ex.runs().items()])
        return json_reply(dict(runs=runs, root=ex.runs_root.name if ex.runs_root else None), request)

    async def api_run(request: Request) -> Response:
        run_id = query_dict(request).get("id") or ""  # ex.run refuses a missing or empty id.
        info = await run_in_threadpool(lambda: run_info(run_id, ex.run(run_id)))
        return json_reply(info, request)

    async def api_run_stats(request: Request) -> Response:
        query = query_dict(request)
        since = parse_since(query.get("since"))
        data = await run_in_threadpool(lambda: read_stats(ex.run(query.get("id")), since))
        return JSONResponse(data, headers=NO_STORE)

    async def api_run_file(request: Request) -> Response:
        query = query_dict(request)
        run = await run_in_threadpool(ex.run, query.get("id"))
        if ex.runs_root is None:
            raise ParamError("no --runs folder was given", status=404)
        path = safe_file(run, query.get("path", ""))
        if not inside(path, ex.runs_root):  # A run folder reached through a link: its files stay unserved.
            raise ParamError(f"path={query.get('path')!r} is outside --runs: refused", status=403)
        try:  # Checked here: once the reply has started, a failed open can only drop the connection.
            with open(path, "rb"):
                pass
        except OSError as e:
            raise ParamError(f"path={query.get('path')!r} cannot be read ({e.strerror})", status=403) from None
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    return [
        Route("/", page_model),
        Route("/runs", page_runs),
        Route("/api/status", api_status),
        Route("/api/models", api_models),
        Route("/api/model", api_model),
        Route("/api/render", api_render),
        Route("/api/save", api_save, methods=["POST"]),
        Route("/api/runs", api_runs),
        Route("/api/run", api_run),
        Route("/api/run/stats", api_run_stats),
        Route("/api/run/file", api_run_file),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


async def on_param_error(request: Request, exc: ParamError) -> Response:
    return error(str(exc), exc.status)


async def on_ganforge_error(request: Request, exc: GanforgeError) -> Response:
    return error(str(exc), 422)


async def on_memory_error(request: Request, exc: Exception) -> Response:
    if not out_of_memory(exc):
        raise exc  # A RuntimeError that is a bug: on to on_crash, which logs its traceback.
    return error(
        "there is not enough memory for this request: ask for fewer images (grid), or restart the explorer "
        "on a device with more memory",
        507,
    )


async def on_value_error(request: Request, exc: ValueError) -> Response:
    return error(str(exc), 400)


async def on_http_error(request: Request, exc: HTTPException) -> Response:
    return error(exc.detail or "request refused", exc.status_code)


async def on_crash(request: Request, exc: Exception) -> Response:
    return error(f"internal error ({type(exc).__name__}): {exc}", 500)


def create_app(
    checkpoint: str | Path | None = None,
    runs: str | Path | None = None,
    device: str = "auto",
    save_dir: str | Path = "explore-saves",
    host: str = "127.0.0.1",
    limits: Limits | None = None,
    directions: str | Path | None = None,
) -> Starlette:
    """The explorer app; the server state is `app.state.explorer` (closed on shutdown). `directions` is a file
    from `ganforge directions`, shown as sliders on every model of its w_dim."""
    if checkpoint is None and runs is None:
        raise ValueError("give --checkpoint CKPT, --runs DIR or both")
    checkpoint = Path(checkpoint).resolve() if checkpoint is not None else None
    if checkpoint is not None and not checkpoint.is_file():
        raise ValueError(f"--checkpoint {checkpoint} is not a file")
    runs = Path(runs).resolve() if runs is not None else None
    if runs is not None and not runs.is_dir():
        raise ValueError(f"--runs {runs} is not a folder")
    ex = Explorer(checkpoint, runs, resolve_device(device), Path(save_dir).resolve(), limits or Limits())
    if directions is not None:
        ex.directions_path = Path(directions).resolve()
        ex.directions = load_directions(ex.directions_path, flag="--directions")  # A ToolError is a ValueError.

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        ex.close()

    # Loopback servers answer loopback Host names only: a web page cannot reach them by DNS rebinding.
    hosts = list(LOOPBACK) if host in LOOPBACK else ["*"]
    # Starlette calls each handler with an exception of its key's class; its hints want handlers of any Exception.
    handlers: dict[type[Exception], Callable[[Request, Any], Awaitable[Response]]] = {
        ParamError: on_param_error,
        GanforgeError: on_ganforge_error,
        ValueError: on_value_error,
        HTTPException: on_http_error,
        MemoryError: on_memory_error,
        RuntimeError: on_memory_error,
        Exception: on_crash,
    }
    app = Starlette(
        routes=build_routes(ex),
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts), Middleware(SameOriginOnly)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.explorer = ex
    return app
