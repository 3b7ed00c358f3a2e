"""Where training images live: on the device when they fit, else in (pinned) host memory, streamed in chunks.

Decoded uint8 images are small next to a GPU's memory for most FER sets (RAF-DB at 224 x 224 x 3 is 2.3 GB), so
they are held on the device and every batch is an ``index_select`` there. AffectNet at 224 is about 44 GB: when
the images do not fit, they stay on the host (pinned on CUDA) and each chunk of ``chunk_batches`` batches is
gathered on the host in the epoch's order and copied to the device asynchronously, so the batch loop reads
device tensors either way. The epoch's order is drawn on the device as in resident mode and read to the host
once per epoch, so both modes train on the same batches in the same order.
"""

from __future__ import annotations

from typing import Literal

import torch

from fbench.errors import FbenchError

Residency = Literal["auto", "device", "stream"]
RESIDENCIES = ("auto", "device", "stream")
Placement = Literal["device", "stream"]
# The share of the device's free memory the training images may take; the rest is for the model and activations.
DEVICE_SHARE = 0.5


def fits_on_device(nbytes: int, device: torch.device, share: float = DEVICE_SHARE) -> bool:
    """Whether ``nbytes`` of images fit in ``share`` of the device's free memory (always, off CUDA: host and
    device memory are the same there)."""
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= share * free


def choose_residency(images: torch.Tensor, device: torch.device, residency: Residency = "auto",
                     copies: int = 1) -> Placement:
    """``"device"`` or ``"stream"`` for ``images`` held ``copies`` times (offline augmentation); ``auto``: on the
    device when they fit."""
    if residency not in RESIDENCIES:
        raise FbenchError(f"residency must be one of {', '.join(RESIDENCIES)} (got {residency!r})")
    if residency == "device" or residency == "stream":
        return residency
    nbytes = images.numel() * images.element_size() * copies
    return "device" if images.device == device or fits_on_device(nbytes, device) else "stream"


class ResidentBatches:
    """Every image on the device: a batch is an ``index_select`` of the epoch's order."""

    mode = "device"

    def __init__(self, images: torch.Tensor, device: torch.device) -> None:
        self.images = images.to(device)

    def start_epoch(self, order: torch.Tensor) -> None:
        self._order = order

    def batch(self, begin: int, count: int) -> torch.Tensor:
        return self.images.index_select(0, self._order[begin:begin + count])


class StreamedBatches:
    """Images in host memory (pinned on CUDA); each chunk of ``chunk_rows`` rows of the epoch's order is
    gathered on the host and copied to the device in one asynchronous transfer. Two host buffers alternate, so
    gathering the next chunk never overwrites one that is still being copied."""

    mode = "stream"

    def __init__(self, images: torch.Tensor, device: torch.device, chunk_rows: int) -> None:
        self.device = device
        self.images = images.cpu()
        self.chunk_rows = max(1, int(chunk_rows))
        pin = device.type == "cuda"
        shape = (min(self.chunk_rows, self.images.shape[0]), *self.images.shape[1:])
        self._buffers = [torch.empty(shape, dtype=self.images.dtype, pin_memory=pin) for _ in range(2)]
        self._copied: list[torch.cuda.Event | None] = [None, None]
        self._which = 0
        self._chunk_start = -1
        self._chunk: torch.Tensor | None = None

    def start_epoch(self, order: torch.Tensor) -> None:
        self._order = order.cpu()  # the epoch's one read of the order
        self._chunk_start = -1

    def _load_chunk(self, start: int) -> None:
        rows = self._order[start:start + self.chunk_rows]
        buffer_index = self._which
        self._which = 1 - self._which
        event = self._copied[buffer_index]
        if event is not None:
            event.synchronize()  # the copy out of this buffer, two chunks ago, has finished
        buffer = self._buffers[buffer_index][:len(rows)]
        torch.index_select(self.images, 0, rows, out=buffer)
        self._chunk = buffer.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
            self._copied[buffer_index] = event
        elif self.device.type == "cpu":
            self._chunk = self._chunk.clone()  # the buffer is reused: the chunk must not alias it
        self._chunk_start = start

    def batch(self, begin: int, count: int) -> torch.Tensor:
        start = begin - begin % self.chunk_rows
        if start != self._chunk_start:
            self._load_chunk(start)
        assert self._chunk is not None  # loaded just above, or by an earlier call for the same chunk
        offset = begin - start
        return self._chunk[offset:offset + count]


def batch_source(images: torch.Tensor, device: torch.device, batch_size: int, residency: Residency = "auto",
                 chunk_batches: int = 64) -> ResidentBatches | StreamedBatches:
    """Where the training batches come from: the device-resident images, or chunks streamed from the host
    (``chunk_batches`` batches per transfer)."""
    if choose_residency(images, device, residency) == "device":
        return ResidentBatches(images, device)
    return StreamedBatches(images, device, chunk_rows=batch_size * chunk_batches)
