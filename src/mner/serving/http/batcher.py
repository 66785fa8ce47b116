"""Micro-batching: posts that arrive together are tagged in one batch on the tagging thread."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from mner.data import MnerInputError
from mner.serving.http.schema import RequestError
from mner.serving.pipeline import PostInput
from mner.vision.decode import ImageError


class Batcher:
    """Posts prepared on the Pipeline's threads, then those that arrive together tagged in one batch on the
    tagging thread (see the module docstring); each post's answer is what tagging it alone gives."""

    def __init__(self, pipeline, executor: ThreadPoolExecutor, max_batch: int, wait: float):
        self.pipeline, self.executor = pipeline, executor
        self.max_batch, self.wait = max_batch, wait
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    async def tag(self, post: PostInput) -> dict:
        """The post's result as JSON.

        Raises:
            RequestError: 422 for a post the Pipeline refuses (its reason).
        """
        loop = asyncio.get_running_loop()
        if self.task is None:  # started on the event loop that serves the requests
            self.queue = asyncio.Queue()
            self.task = loop.create_task(self._run())
        prepared = (await asyncio.wrap_future(self.pipeline.prepare_later([post])))[0]
        answer = loop.create_future()
        self.queue.put_nowait((prepared, answer))  # bounded: Admission lets at most max_pending requests in
        return await answer

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time())))
                except TimeoutError:
                    break
            try:
                results = await loop.run_in_executor(
                    self.executor, tag_posts, self.pipeline, [p for p, _ in batch]
                )
            except Exception as err:  # noqa: BLE001 - a crash answers its requests with the crash, not a hang
                results = [err] * len(batch)
            for (_, answer), result in zip(batch, results, strict=True):
                if answer.done():  # the client went away
                    continue
                if isinstance(result, Exception):
                    answer.set_exception(result)
                else:
                    answer.set_result(result)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


def tag_posts(pipeline, prepared: list) -> list[dict | RequestError]:
    """The Pipeline's result for each prepared post as JSON; a post's input error becomes a 422 naming the
    reason."""
    out: list[dict | RequestError] = []
    for result in pipeline.tag_prepared(prepared):
        if isinstance(result, ImageError):
            # the reason without the name the Pipeline gives an upload ("<upload>: ...")
            out.append(RequestError(422, f"image: {result.reason}"))
        elif isinstance(result, MnerInputError):
            out.append(RequestError(422, str(result)))
        else:
            out.append(result.to_dict())
    return out
