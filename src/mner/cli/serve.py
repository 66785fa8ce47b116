"""``mner serve``: the HTTP service and web demo (mner.serving.service) on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from mner.cli.errors import fail, user_errors
from mner.cli.options import (
    ChannelArgs,
    MinScoreOption,
    ModelOption,
    RuntimeOption,
    ThreadsOption,
    channel_options,
)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@channel_options(files=("kg",), limits=True)
@user_errors
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port to listen on.")] = 8000,
    model: ModelOption = None,
    max_image_bytes: Annotated[
        int, typer.Option(min=1, help="Largest image file accepted, in bytes (default 10 MiB).")
    ] = 10 * 1024 * 1024,
    max_pending: Annotated[
        int,
        typer.Option(
            min=1, help="Requests in the service at once (reading or waiting); more get 503 at once."
        ),
    ] = 64,
    max_buffered_bytes: Annotated[
        int,
        typer.Option(
            min=1, help="Bytes of request bodies held at once (counted as they arrive); more get 503."
        ),
    ] = 128 * 1024 * 1024,
    read_timeout: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds a client has to send a whole request; a slower one is cut off."),
    ] = 30.0,
    log_level: Annotated[str, typer.Option(help=f"uvicorn's log level: {', '.join(LOG_LEVELS)}.")] = "info",
    threads: ThreadsOption = None,
    runtime: RuntimeOption = "auto",
    min_score: MinScoreOption = 0.0,
    channels: ChannelArgs = None,
) -> None:
    """Serve POST /v1/tag, GET /health, the OpenAPI docs at /docs and a web demo at /."""
    if log_level not in LOG_LEVELS:
        fail(f"--log-level {log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
    if not host.strip() or host != host.strip():
        # "" binds every interface: only an explicit 0.0.0.0 (or ::) may
        fail(
            f"--host {host!r}: expected an address to listen on: 127.0.0.1 (this machine only), or 0.0.0.0 "
            "for every interface"
        )
    try:
        import uvicorn

        from mner.serving.service import Limits, create_app, listening_socket, server_config
    except ImportError as err:
        fail(f"mner serve needs fastapi, uvicorn and python-multipart ({err}): pip install mner")
    from mner.serving.pipeline import Pipeline

    try:
        sock = listening_socket(host, port)  # before the model loads: a port in use fails at once
    except OSError as err:
        fail(
            f"{host}:{port}: cannot listen there ({(err.strerror or str(err)).lower()}): give another --port or --host"
        )
    limits = Limits(
        max_chars=channels.max_chars,
        max_image_bytes=max_image_bytes,
        max_pending=max_pending,
        max_buffered_bytes=max_buffered_bytes,
    )
    try:
        pipeline = Pipeline(
            model, channels.files, runtime, threads, min_score
        )  # loaded once, before the port opens
    except BaseException:
        sock.close()
        raise
    for warning in pipeline.warnings():
        typer.echo(f"warning: {warning}", err=True)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL is bracketed
    typer.echo(f"mner serve: http://{shown}:{port}/ (API docs at /docs)", err=True)
    config = server_config(create_app(pipeline, limits), host, port, read_timeout, log_level=log_level)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
