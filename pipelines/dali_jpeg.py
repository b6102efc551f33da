"""DALI backend of the JPEG pipeline (jpeg.py): the host reads the files and draws the parameters, DALI decodes only
each crop box (``fn.decoders.image_slice``: nvJPEG's crop-on-decode on the GPU, ``device="mixed"``; libjpeg-turbo
with ``device_id=None``) and resizes, crops, flips, rotates and normalises. Same ``(indices, seed)`` -> same
boxes, flips and angles as the CPU twin; the pixel bounds between the two are in docs/semantics.md R27.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import DataError
from .jpeg import BadFiles, JpegRecipe, OnBadFile, draw_jpeg_params, read_batch, output_geometry

if TYPE_CHECKING:
    from fastkd.data.imagenet import FileDataset

PARAMETER_INPUTS = ("box_start", "box_shape", "resize_to", "crop_start", "flip", "angle")


def jpeg_graph(recipe: JpegRecipe, *, decoder: str, mean, std, channels_last: bool):
    """The augmentation graph on ``external_source`` inputs: the encoded bytes and :data:`PARAMETER_INPUTS` (the
    angle only for a recipe that rotates)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    params = {name: fn.external_source(name=name, dtype=types.INT32) for name in PARAMETER_INPUTS[:-1]}
    encoded = fn.external_source(name="encoded", dtype=types.UINT8)
    images = fn.decoders.image_slice(encoded, start=params["box_start"], shape=params["box_shape"], axis_names="HW",
                                     device=decoder, output_type=types.RGB, jpeg_fancy_upsampling=True)
    images = fn.resize(images, size=fn.cast(params["resize_to"], dtype=types.FLOAT), interp_type=types.INTERP_LINEAR,
                       antialias=True)
    images = fn.slice(images, start=params["crop_start"], shape=[recipe.size, recipe.size], axis_names="HW")
    images = fn.flip(images, horizontal=params["flip"])  # before the rotation, as the reference's transform order
    if recipe.rotate_degrees:
        angle = fn.external_source(name="angle", dtype=types.FLOAT)
        images = fn.rotate(images, angle=angle, interp_type=types.INTERP_NN, fill_value=0, keep_size=True)
    return fn.crop_mirror_normalize(images, mean=[255.0 * m for m in mean], std=[255.0 * s for s in std],
                                    dtype=types.FLOAT, output_layout="HWC" if channels_last else "CHW")


class DaliJpegPipeline:
    """``pipeline(indices, seed, rows=None)``: a rank decodes only its ``rows`` of the batch, with the parameters
    drawn for the whole batch (the files of the other rows are read for their header sizes only)."""

    backend = "dali"
    takes_rows = True

    def __init__(self, dataset: FileDataset, recipe: JpegRecipe, *, mean, std, device: torch.device,
                 dtype: torch.dtype, channels_last: bool, workers: int = 4, prefetch: int = 2,
                 on_bad_file: OnBadFile = "error") -> None:
        self.dataset, self.recipe, self.device = dataset, recipe, device
        self.dtype, self.channels_last = dtype, channels_last
        self.mean, self.std = mean, std
        self.num_threads = max(1, workers)
        self.bad = BadFiles(on_bad_file)
        self._pipe, self._capacity = None, 0

    def _pipeline(self, batch_size: int):
        if self._pipe is None or batch_size > self._capacity:
            from nvidia.dali import pipeline_def

            decoder = "mixed" if self.device.type == "cuda" else "cpu"
            graph = pipeline_def(exec_dynamic=True, prefetch_queue_depth=1)(jpeg_graph)
            device_id = (self.device.index or 0) if self.device.type == "cuda" else None
            self._pipe = graph(self.recipe, decoder=decoder, mean=self.mean, std=self.std,
                               channels_last=self.channels_last, batch_size=batch_size,
                               num_threads=self.num_threads, device_id=device_id)
            self._pipe.build()
            self._capacity = batch_size
        return self._pipe

    def __call__(self, indices: torch.Tensor, seed: int,
                 rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        from nvidia.dali.plugin.pytorch import feed_ndarray

        indices = indices.to(torch.int64).cpu()
        rows = rows or slice(0, len(indices))
        paths = [self.dataset.files[i] for i in indices.tolist()]
        files = read_batch(paths, None, self.bad)  # every row's size fixes the draws
        params = draw_jpeg_params(self.recipe, files.sizes, seed)
        resize_to, crop_start = output_geometry(self.recipe, files.sizes)
        kept = [i for i in range(rows.start, rows.stop) if files.readable[i]]
        if not kept:
            raise DataError(f"every file of a batch was skipped as unreadable (e.g. {paths[rows.start]}); check the "
                            "data set (data.on_bad_file=skip)")
        pipe = self._pipeline(len(kept))
        pipe.feed_input("encoded", [files.encoded[i] for i in kept])
        inputs = {"box_start": params.boxes[:, :2], "box_shape": params.boxes[:, 2:], "resize_to": resize_to,
                  "crop_start": crop_start, "flip": params.flips}
        for name, values in inputs.items():
            pipe.feed_input(name, values[kept].numpy().astype(np.int32))
        if params.angles is not None:
            pipe.feed_input("angle", params.angles[kept].numpy().astype(np.float32))
        try:
            (output,) = pipe.run()
        except RuntimeError as exc:
            raise DataError(f"DALI cannot decode a file of this batch ({str(exc).splitlines()[0][:200]}); "
                            "data.pipeline=torch names it") from None
        dense = output.as_tensor()
        images = torch.empty(dense.shape(), dtype=torch.float32, device=self.device)
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        feed_ndarray(dense, images, cuda_stream=stream)
        images = images.permute(0, 3, 1, 2) if self.channels_last else images
        return images.to(self.dtype), self.dataset.labels[indices[kept]].to(self.device)
