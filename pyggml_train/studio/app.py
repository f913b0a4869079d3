"""The studio's HTTP and WebSocket routes (Starlette): one function per endpoint.

    GET  /                          the workbench page
    GET  /api/node-types            the palette: spec.node_types_json()
    POST /api/check                 spec -> {ok, errors, shapes} (never 4xx for a bad spec)
    POST /api/script                spec -> a Python script that reproduces its training run
    GET  /api/examples[/{name}]     the bundled example specs
    GET  /api/specs[/{name}]        saved specs; PUT saves one, DELETE removes it
    POST /api/flatten[?only=id]     spec -> the spec with its groups (or that one) expanded
    POST /api/groups                {groups} -> {interfaces: {name: ports, params}, errors}
    GET  /api/templates[/{name}]    group templates (the palette's blocks); PUT saves
                                    {groups} under a name that is one of them, DELETE removes
    GET  /api/data; PUT /api/data/{name}   text files a TextDataset may read (raw UTF-8 body)
    GET  /api/datasets              the named datasets: files, URLs, checksums, at hand or not
    POST /api/datasets/{name}/fetch download a dataset's missing files into the cache (checked)
    GET  /api/runs; POST /api/runs  list runs; start one from a spec (409 "busy" if one runs)
    GET  /api/runs/{id}             a run with its metrics so far; PATCH renames it
                                    ({"name": ...}); DELETE removes it (not while active)
    POST /api/runs/{id}/stop|resume|generate|export;  GET /api/runs/{id}/script
    GET  /api/runs/{id}/files/{path}   a run's file (checkpoint.npz, exports/model.gguf...)
    GET  /api/compare?runs=ID,ID    runs side by side: numbers, curves, differing spec fields
    GET  /api/sweeps[/{id}]         sweeps; POST /api/sweeps {spec, axes} queues one
    POST /api/sweeps/{id}/stop      stop the current run, cancel the rest
    WS   /ws                        run and sweep events (runs.py, sweeps.py), after a "hello"

Bad input gets a 4xx JSON answer {"error": message, "errors": [{node, message}...]} and
never reaches the worker; file names resolve inside the data directory only (datadir.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import spec as S
from ..atomic import atomic_open
from ..datasets import DATASETS, cache_dir, fetch, find_file, locate, missing_message
from ..recipes import script_for
from . import worker
from .compare import compare
from .datadir import DataDir, PathError, inside
from .runs import Busy, NotResumable, RunManager, RunNotFound
from .sweeps import (
    SweepConflict,
    SweepError,
    SweepManager,
    SweepNotFound,
    combinations,
    parse_axes,
    variant,
)

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 << 20  # bytes: a spec is a few KB, a text corpus a few MB
_EXAMPLE_DIRS = (
    Path(__file__).resolve().parent / "examples",  # installed wheel (cmake/StudioAssets.cmake)
    Path(__file__).resolve().parents[2] / "examples" / "specs",  # source checkout
)


class BadRequest(Exception):
    """A 4xx answer: status, message and optional per-node errors."""

    def __init__(self, status: int, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []


def examples_dir() -> Path | None:
    return next((d for d in _EXAMPLE_DIRS if d.is_dir()), None)


# ---- request helpers ----------------------------------------------------------------------------
async def _body(request: Request) -> bytes:
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > MAX_BODY:
        raise BadRequest(413, f"request body of {size} bytes exceeds the {MAX_BODY}-byte limit")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(413, f"request body exceeds the {MAX_BODY}-byte limit")
    return body


async def _json(request: Request) -> Any:
    body = await _body(request)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest(400, "the request body nests JSON too deeply") from None


async def _json_object(request: Request, what: str) -> dict[str, Any]:
    data = await _json(request)
    if not isinstance(data, dict):
        raise BadRequest(400, f"expected {what} as a JSON object, got {type(data).__name__}")
    return data


def _studio(request: Request) -> tuple[DataDir, RunManager]:
    return request.app.state.datadir, request.app.state.runs


def _sweeps(request: Request) -> SweepManager:
    return request.app.state.sweeps


def _check(datadir: DataDir, spec: Any) -> dict[str, Any]:
    """check_spec, plus the data-dir confinement of file paths named in the spec, plus
    that a named dataset is at hand: a run never trains on a stand-in, and a check never
    downloads (POST /api/datasets/NAME/fetch does)."""
    path_errors = datadir.spec_path_errors(spec)
    if path_errors:  # never let shape inference read a file outside the data dir
        return {"ok": False, "errors": path_errors, "shapes": {}}
    result = S.check_spec(spec, datadir.data)
    known = [e["message"] for e in result["errors"]]  # the checker's carry the node's label
    missing = [
        e for e in _missing_datasets(datadir, spec) if not any(e["message"] in k for k in known)
    ]
    if missing:
        result = {**result, "ok": False, "errors": [*result["errors"], *missing]}
    return result


def _missing_datasets(datadir: DataDir, spec: Any) -> list[dict[str, Any]]:
    """An error on each TextDataset whose named dataset is not at hand (which file, where
    to put it, its URL) or fails its checksum."""
    nodes = spec.get("nodes") if isinstance(spec, dict) else None
    errors = []
    for node in nodes if isinstance(nodes, list) else []:
        params = node.get("params") if isinstance(node, dict) else None
        if node.get("type") != "TextDataset" or not isinstance(params, dict):
            continue
        source = params.get("source", "tinyshakespeare")
        ds = DATASETS.get(source) if isinstance(source, str) else None
        if ds is None:  # 'file', or a bad value the checker reports
            continue
        try:
            if locate(ds, datadir.data) is None:
                how = "the Data panel's Fetch downloads it"
                errors.append(
                    {
                        "node": node.get("id"),
                        "message": f"{missing_message(ds, datadir.data)}; {how}",
                    }
                )
        except ValueError as exc:  # a damaged file
            errors.append({"node": node.get("id"), "message": str(exc)})
    return errors


def _dataset_status(datadir: DataDir, name: str) -> dict[str, Any]:
    """A dataset as the Data panel shows it: its files, where each is, at hand or not."""
    ds = DATASETS[name]
    files = []
    for f in ds.files:
        path = find_file(f, datadir.data)
        files.append(
            {
                "name": f.name,
                "url": f.url,
                "sha256": f.sha256,
                "bytes": f.size,
                "path": str(path) if path else None,
            }
        )
    try:
        at_hand, error = locate(ds, datadir.data) is not None, None
    except ValueError as exc:
        at_hand, error = False, str(exc)
    return {
        "name": ds.name,
        "title": ds.title,
        "validation": ds.validation,
        "files": files,
        "at_hand": at_hand,
        "error": error,
        "cache": str(cache_dir()),
    }


def _checked_spec(datadir: DataDir, spec: Any) -> S.Spec:
    """The parsed spec, or a 422 carrying every error on its node."""
    result = _check(datadir, spec)
    if not result["ok"]:
        first = result["errors"][0]["message"]
        more = len(result["errors"]) - 1
        suffix = f" (and {more} more)" if more else ""
        raise BadRequest(422, f"the spec is not valid: {first}{suffix}", result["errors"])
    return S.parse_spec(spec, datadir.data)


# ---- pages and specs ----------------------------------------------------------------------------
async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


async def node_types(request: Request) -> Response:
    return JSONResponse(S.node_types_json())


async def check(request: Request) -> Response:
    datadir, _ = _studio(request)
    spec = await _json(request)
    return JSONResponse(await asyncio.to_thread(_check, datadir, spec))


async def script(request: Request) -> Response:
    datadir, _ = _studio(request)
    spec = await _json_object(request, "a spec")
    parsed = await asyncio.to_thread(_checked_spec, datadir, spec)
    return PlainTextResponse(script_for(parsed), media_type="text/x-python")


async def list_examples(request: Request) -> Response:
    d = examples_dir()
    out = []
    for f in sorted(d.glob("*.json")) if d else []:
        with contextlib.suppress(ValueError, OSError):
            out.append({"name": f.stem, "title": json.loads(f.read_text()).get("name", f.stem)})
    return JSONResponse(out)


async def get_example(request: Request) -> Response:
    d = examples_dir()
    name = request.path_params["name"]
    for f in d.glob("*.json") if d else []:
        if f.stem == name:
            return JSONResponse(json.loads(f.read_text()))
    raise BadRequest(404, f"no example {name!r}; GET /api/examples lists them")


async def list_specs(request: Request) -> Response:
    datadir, _ = _studio(request)
    return JSONResponse(sorted(f.stem for f in datadir.specs.glob("*.json")))


async def get_spec(request: Request) -> Response:
    datadir, _ = _studio(request)
    path = datadir.spec_file(request.path_params["name"])
    if not path.is_file():
        raise BadRequest(404, f"no saved spec {path.stem!r}; GET /api/specs lists them")
    return Response(path.read_bytes(), media_type="application/json")


async def put_spec(request: Request) -> Response:
    """Save a spec as is (a draft may still have errors; /api/check reports them)."""
    datadir, _ = _studio(request)
    path = datadir.spec_file(request.path_params["name"])
    spec = await _json_object(request, "a spec")
    if not isinstance(spec.get("nodes", []), list) or not isinstance(spec.get("links", []), list):
        raise BadRequest(400, "a spec has a 'nodes' list and a 'links' list")
    with atomic_open(path) as f:
        f.write(json.dumps(spec, indent=1).encode())
    return JSONResponse({"saved": path.stem})


async def delete_spec(request: Request) -> Response:
    datadir, _ = _studio(request)
    path = datadir.spec_file(request.path_params["name"])
    if not path.is_file():
        raise BadRequest(404, f"no saved spec {path.stem!r}")
    path.unlink()
    return JSONResponse({"deleted": path.stem})


# ---- groups and their templates -----------------------------------------------------------------
async def flatten(request: Request) -> Response:
    """The spec without its groups; ?only=<group node id> replaces that group node only."""
    spec = await _json_object(request, "a spec")
    try:
        return JSONResponse(S.flatten_spec(spec, request.query_params.get("only")))
    except S.SpecError as exc:
        raise BadRequest(
            422, f"the spec's groups are not valid: {exc.message}", exc.errors
        ) from None


def _interfaces(groups: Any) -> dict[str, Any]:
    """Each definition's interface, or the errors that keep it from having one."""
    if not isinstance(groups, dict):
        raise BadRequest(400, f"groups must be an object of definitions, got {groups!r}")
    interfaces, errors = {}, []
    for name in groups:
        try:
            interfaces[name] = S.group_interface(groups, name)
        except S.SpecError as exc:
            errors += [{**e, "group": name} for e in exc.errors]
    return {"interfaces": interfaces, "errors": errors}


async def groups(request: Request) -> Response:
    data = await _json_object(request, "{groups: {name: definition}}")
    return JSONResponse(_interfaces(data.get("groups")))


def _template(path: Path) -> dict[str, Any]:
    """A saved template with its interface (or its error, for a file edited by hand)."""
    name = path.stem
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        face = S.group_interface(saved["groups"], name)
    except (ValueError, KeyError, TypeError, OSError) as exc:  # SpecError is a ValueError
        return {"name": name, "error": f"template {path.name} is not usable: {exc}"}
    title = saved["groups"][name].get("title") or name
    return {"name": name, "title": title, "groups": saved["groups"], "interface": face}


async def list_templates(request: Request) -> Response:
    datadir, _ = _studio(request)
    return JSONResponse([_template(f) for f in sorted(datadir.templates.glob("*.json"))])


async def get_template(request: Request) -> Response:
    datadir, _ = _studio(request)
    path = datadir.template_file(request.path_params["name"])
    if not path.is_file():
        raise BadRequest(404, f"no template {path.stem!r}; GET /api/templates lists them")
    return JSONResponse(_template(path))


async def put_template(request: Request) -> Response:
    """Save a group (and the groups it uses) as a template; a broken group is refused."""
    datadir, _ = _studio(request)
    path = datadir.template_file(request.path_params["name"])
    name = path.stem
    data = await _json_object(request, "a template {groups: {name: definition, ...}}")
    given = data.get("groups")
    if not isinstance(given, dict) or name not in given:
        raise BadRequest(
            400, f"a template is {{groups: {{...}}}} holding the group {name!r} it is named after"
        )
    try:
        S.group_interface(given, name)
    except S.SpecError as exc:
        raise BadRequest(422, f"the group is not valid: {exc.message}", exc.errors) from None
    with atomic_open(path) as f:
        f.write(json.dumps({"name": name, "groups": S.used_groups(given, name)}, indent=1).encode())
    return JSONResponse(_template(path))


async def delete_template(request: Request) -> Response:
    datadir, _ = _studio(request)
    path = datadir.template_file(request.path_params["name"])
    if not path.is_file():
        raise BadRequest(404, f"no template {path.stem!r}")
    path.unlink()
    return JSONResponse({"deleted": path.stem})


async def list_data(request: Request) -> Response:
    datadir, _ = _studio(request)
    files = sorted(f for f in datadir.data.iterdir() if f.is_file() and not f.name.startswith("."))
    return JSONResponse([{"name": f.name, "bytes": f.stat().st_size} for f in files])


async def put_data(request: Request) -> Response:
    datadir, _ = _studio(request)
    path = datadir.data_file(request.path_params["name"])
    body = await _body(request)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"a data file must be UTF-8 text: {exc}") from None
    with atomic_open(path) as f:
        f.write(body)
    return JSONResponse({"saved": path.name, "bytes": len(body)})


async def list_datasets(request: Request) -> Response:
    datadir, _ = _studio(request)
    names = list(DATASETS)
    return JSONResponse(
        await asyncio.to_thread(lambda: [_dataset_status(datadir, n) for n in names])
    )


async def fetch_dataset(request: Request) -> Response:
    """Download a dataset's missing files into the cache, checked against their SHA-256:
    503 offline (the message names each file, where to put it and its URL), 409 when a
    file at hand or downloaded is not the published one (its checksum differs)."""
    datadir, _ = _studio(request)
    name = request.path_params["name"]
    if name not in DATASETS:
        raise BadRequest(404, f"no dataset {name!r}; the named datasets are {', '.join(DATASETS)}")
    try:
        await asyncio.to_thread(fetch, name, datadir.data)
    except FileNotFoundError as exc:
        raise BadRequest(503, str(exc)) from None
    except ValueError as exc:
        raise BadRequest(409, str(exc)) from None
    return JSONResponse(await asyncio.to_thread(_dataset_status, datadir, name))


# ---- runs ---------------------------------------------------------------------------------------
async def list_runs(request: Request) -> Response:
    _, runs = _studio(request)
    return JSONResponse(runs.list_runs())


async def start_run(request: Request) -> Response:
    datadir, runs = _studio(request)
    spec = await _json_object(request, "a spec")
    parsed = await asyncio.to_thread(_checked_spec, datadir, spec)
    return JSONResponse(await runs.start(spec, worker.planned_steps(parsed)), status_code=201)


async def get_run(request: Request) -> Response:
    _, runs = _studio(request)
    return JSONResponse(runs.detail(request.path_params["run"]))


async def rename_run(request: Request) -> Response:
    _, runs = _studio(request)
    data = await _json_object(request, '{"name": ...}')
    try:
        return JSONResponse(runs.rename(request.path_params["run"], data.get("name")))
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from None


async def delete_run(request: Request) -> Response:
    _, runs = _studio(request)
    return JSONResponse(await runs.delete(request.path_params["run"]))


async def compare_runs(request: Request) -> Response:
    _, runs = _studio(request)
    ids = [i for i in request.query_params.get("runs", "").split(",") if i]
    try:
        return JSONResponse(await asyncio.to_thread(compare, runs, ids))
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from None


async def stop_run(request: Request) -> Response:
    _, runs = _studio(request)
    return JSONResponse(await runs.stop(request.path_params["run"]))


async def resume_run(request: Request) -> Response:
    _, runs = _studio(request)
    return JSONResponse(await runs.resume(request.path_params["run"]))


def _number(data: dict, key: str, default: float, low: float, high: float, kind: type) -> Any:
    value = data.get(key, default)
    if value is None and key == "top_k":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(400, f"{key} must be a number in [{low}, {high}], got {value!r}")
    if kind is int and not float(value).is_integer():
        raise BadRequest(400, f"{key} must be an integer, got {value!r}")
    return kind(value)


async def generate(request: Request) -> Response:
    """Text from the run's latest checkpoint, in the generation process (never the loop)."""
    _, runs = _studio(request)
    run_dir = runs.run_dir(request.path_params["run"])
    data = await _json_object(request, "generation settings")
    prompt = data.get("prompt", "")
    if not isinstance(prompt, str) or len(prompt) > 10_000:
        raise BadRequest(400, "prompt must be a string of at most 10000 characters")
    settings = {
        "prompt": prompt,
        "temperature": _number(data, "temperature", 0.8, 0.0, 10.0, float),
        "top_k": _number(data, "top_k", None, 1, 1 << 20, int),
        "max_new_tokens": _number(data, "max_new_tokens", 200, 1, 2000, int),
        "seed": _number(data, "seed", 0, 0, 2**31 - 1, int),
    }
    if not (run_dir / worker.CHECKPOINT_NAME).is_file():
        raise BadRequest(409, "this run has no checkpoint yet; wait for the first one")
    try:
        text = await request.app.state.generator.generate(run_dir, settings)
    except ValueError as exc:  # e.g. a prompt character the tokenizer does not know
        raise BadRequest(400, f"cannot generate: {exc}") from None
    return JSONResponse({"text": text, **settings})


async def run_script(request: Request) -> Response:
    datadir, runs = _studio(request)
    run_dir = runs.run_dir(request.path_params["run"])
    spec = json.loads((run_dir / "spec.json").read_text())
    parsed = await asyncio.to_thread(_checked_spec, datadir, spec)
    return PlainTextResponse(script_for(parsed), media_type="text/x-python")


async def export_run(request: Request) -> Response:
    _, runs = _studio(request)
    run_dir = runs.run_dir(request.path_params["run"])
    data = await _json_object(request, "export settings")
    fmt = data.get("format")
    if fmt not in worker.EXPORT_FORMATS:
        raise BadRequest(400, f"format must be one of {list(worker.EXPORT_FORMATS)}, got {fmt!r}")
    if not (run_dir / worker.CHECKPOINT_NAME).is_file():
        raise BadRequest(409, "this run has no checkpoint to export yet")
    try:
        return JSONResponse(await asyncio.to_thread(worker.export, run_dir, fmt))
    except ValueError as exc:
        raise BadRequest(422, str(exc)) from None


async def run_file(request: Request) -> Response:
    """A file of a run (checkpoint, export, metrics), as a download."""
    _, runs = _studio(request)
    run_dir = runs.run_dir(request.path_params["run"])
    path = inside(run_dir, request.path_params["path"])
    if not path.is_file():
        raise BadRequest(404, f"run {run_dir.name} has no file {request.path_params['path']!r}")
    return FileResponse(path, filename=path.name)


# ---- sweeps -------------------------------------------------------------------------------------
async def list_sweeps(request: Request) -> Response:
    return JSONResponse(await asyncio.to_thread(_sweeps(request).list_sweeps))


async def get_sweep(request: Request) -> Response:
    return JSONResponse(_sweeps(request).get(request.path_params["sweep"]))


def _checked_variants(datadir: DataDir, spec: dict, axes: list) -> list[int]:
    """Each combination's planned steps; a 422 naming the combination whose spec is invalid."""
    steps = []
    for values in combinations(axes):
        try:
            steps.append(worker.planned_steps(_checked_spec(datadir, variant(spec, values))))
        except BadRequest as exc:
            label = ", ".join(f"{k}={v!r}" for k, v in values.items())
            message = f"the sweep's run with {label}: {exc.message}"
            raise BadRequest(422, message, exc.errors) from None
    return steps


async def start_sweep(request: Request) -> Response:
    datadir, _ = _studio(request)
    data = await _json_object(request, '{"spec": ..., "axes": [...]}')
    spec = data.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), list):
        raise BadRequest(400, f"expected 'spec' as a spec object with 'nodes', got {spec!r:.80}")
    axes = parse_axes(spec, data.get("axes"))
    steps = await asyncio.to_thread(_checked_variants, datadir, spec, axes)
    return JSONResponse(_sweeps(request).start(spec, axes, steps), status_code=201)


async def stop_sweep(request: Request) -> Response:
    return JSONResponse(await _sweeps(request).stop(request.path_params["sweep"]))


# ---- events -------------------------------------------------------------------------------------
async def events(ws: WebSocket) -> None:
    """A hello snapshot (runs, the active run's metrics), then every run event as it happens."""
    _, runs = _studio(ws)  # type: ignore[arg-type]
    await ws.accept()
    queue = runs.subscribe()
    try:
        active = runs.active
        hello = {
            "type": "hello",
            "runs": runs.list_runs(),
            "active": runs.detail(active.id) if active else None,
        }
        await ws.send_json(hello)
        receiver = asyncio.create_task(_drain(ws))  # notices the client going away
        while not receiver.done():
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await ws.send_json(getter.result())
            else:
                getter.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        runs.unsubscribe(queue)


async def _drain(ws: WebSocket) -> None:
    """Read and ignore client messages until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive_text()


# ---- errors and the app -------------------------------------------------------------------------
def _error(status: int, message: str, errors: list[dict] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "errors": errors or []}, status_code=status)


async def _on_bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return _error(exc.status, exc.message, exc.errors)


async def _on_known(request: Request, exc: Exception) -> Response:
    status = {
        Busy: 409,
        NotResumable: 409,
        RunNotFound: 404,
        PathError: 400,
        S.SpecError: 422,
        SweepError: 400,
        SweepNotFound: 404,
        SweepConflict: 409,
    }[type(exc)]
    errors = exc.errors if isinstance(exc, S.SpecError) else None
    return _error(status, exc.args[0] if exc.args else str(exc), errors)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail)


def create_app(data_dir: str | Path) -> Starlette:
    """The studio as an ASGI app over data_dir (created if missing)."""
    datadir = DataDir(data_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.datadir = datadir
        app.state.runs = RunManager(datadir)
        app.state.generator = worker.Generator()
        app.state.sweeps = SweepManager(datadir, app.state.runs)
        app.state.sweeps.recover()
        try:
            yield
        finally:
            await app.state.sweeps.close()
            await app.state.runs.close()
            app.state.generator.close()

    run = "/api/runs/{run}"
    routes = [
        Route("/", index),
        Route("/api/node-types", node_types),
        Route("/api/check", check, methods=["POST"]),
        Route("/api/script", script, methods=["POST"]),
        Route("/api/examples", list_examples),
        Route("/api/examples/{name}", get_example),
        Route("/api/specs", list_specs),
        Route("/api/specs/{name}", get_spec),
        Route("/api/specs/{name}", put_spec, methods=["PUT"]),
        Route("/api/specs/{name}", delete_spec, methods=["DELETE"]),
        Route("/api/flatten", flatten, methods=["POST"]),
        Route("/api/groups", groups, methods=["POST"]),
        Route("/api/templates", list_templates),
        Route("/api/templates/{name}", get_template),
        Route("/api/templates/{name}", put_template, methods=["PUT"]),
        Route("/api/templates/{name}", delete_template, methods=["DELETE"]),
        Route("/api/data", list_data),
        Route("/api/data/{name}", put_data, methods=["PUT"]),
        Route("/api/datasets", list_datasets),
        Route("/api/datasets/{name}/fetch", fetch_dataset, methods=["POST"]),
        Route("/api/runs", list_runs),
        Route("/api/runs", start_run, methods=["POST"]),
        Route(run, get_run),
        Route(run, rename_run, methods=["PATCH"]),
        Route(run, delete_run, methods=["DELETE"]),
        Route(run + "/stop", stop_run, methods=["POST"]),
        Route(run + "/resume", resume_run, methods=["POST"]),
        Route(run + "/generate", generate, methods=["POST"]),
        Route(run + "/script", run_script),
        Route(run + "/export", export_run, methods=["POST"]),
        Route(run + "/files/{path:path}", run_file),
        Route("/api/compare", compare_runs),
        Route("/api/sweeps", list_sweeps),
        Route("/api/sweeps", start_sweep, methods=["POST"]),
        Route("/api/sweeps/{sweep}", get_sweep),
        Route("/api/sweeps/{sweep}/stop", stop_sweep, methods=["POST"]),
        WebSocketRoute("/ws", events),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers: dict[Any, Any] = {BadRequest: _on_bad_request, HTTPException: _on_http}
    known = (Busy, NotResumable, RunNotFound, PathError, S.SpecError)
    for exc_type in (*known, SweepError, SweepNotFound, SweepConflict):
        handlers[exc_type] = _on_known
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
