"""The declared preprocessing, and one way of drawing each epoch's order and augmentation for every path.

Both the in-memory batches (:class:`~gacd_core.data.loader.Batches`) and the streamed ones
(:class:`~gacd_core.data.stream.StreamBatches`) take an epoch's plan from :func:`epoch_plan`: a
generator seeded with (seed, epoch) draws the permutation, then each batch's augmentation parameters
in batch order, in the main process. The streamed loader hands each sample's parameters to the worker
process that decodes it, so the two paths give the same batches on the same images, and a resumed
epoch draws its plan again instead of replaying its batches.

Augmentation parameters, per sample (a row of :data:`PARAMS` floats):

- ``random_crop``: ``(dy, dx, -, -, flip)``, offsets into the image zero-padded by ``padding``, drawn
  as the CIFAR augmentation always drew them (``randint(0, 2 * padding + 1, (n, 2))`` then
  ``rand(n) < 0.5``), so that in-memory training draws what it drew before;
- ``random_resized_crop``: ``(u_area, u_ratio, u_x, u_y, flip)``, four uniforms in [0, 1) turned into a
  box by :func:`resized_crop_box` once the image's size is known (in the worker): the area fraction
  uniform in ``scale``, the log aspect ratio uniform in ``log(ratio)`` (Szegedy et al., 2015, "Going
  deeper with convolutions", sec. 6), the box clipped to the image, its corner uniform. One draw, not
  torchvision's up-to-ten tries, so the parameters do not depend on the image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from gacd_core.spec import DatasetSpec, Preprocessing

PARAMS = 5  # augmentation parameters per sample (see the module docstring)
_MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


@dataclass(frozen=True)
class Transform:
    """A job's preprocessing, resolved: what training draws and what evaluation does."""

    train: str  # random_crop, random_resized_crop or none
    size: int
    padding: int = 4
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    resize: int = 0  # evaluation: the shorter side (0: size)
    center_crop: int = 0  # evaluation: the centre crop (0: size)
    interpolation: str = "bilinear"
    preset: str | None = None

    def __post_init__(self) -> None:
        for name in ("resize", "center_crop"):
            if not getattr(self, name):
                object.__setattr__(self, name, self.size)

    def describe(self) -> dict[str, object]:
        """What the report records."""
        d = asdict(self)
        d["scale"], d["ratio"] = list(self.scale), list(self.ratio)
        if self.train != "random_crop":
            d.pop("padding")
        if self.train != "random_resized_crop":
            d.pop("scale"), d.pop("ratio")
        return d


def transform_of(spec: DatasetSpec, side: int) -> Transform:
    """The job's transform: its ``preprocessing`` (or the CIFAR augmentation), ``augment`` False turning
    the training draw off; ``side``: the images' own, where nothing declares one."""
    p = spec.preprocessing or Preprocessing()
    size = p.side() or spec.image_size or side
    return Transform(
        train=p.train if spec.augment else "none",
        size=size,
        padding=p.padding,
        scale=p.scale,
        ratio=p.ratio,
        flip=p.flip and spec.augment,
        resize=p.resize or size,
        center_crop=p.center_crop or size,
        interpolation=p.interpolation,
        preset=p.preset,
    )


def draw_batch(t: Transform | None, n: int, gen: torch.Generator) -> torch.Tensor:
    """The augmentation parameters of a batch of ``n`` (``(n, PARAMS)`` float64); None: no augmentation."""
    out = torch.zeros(n, PARAMS, dtype=torch.float64)
    if t is None or t.train == "none":
        return out
    if t.train == "random_crop":
        out[:, :2] = torch.randint(0, 2 * t.padding + 1, (n, 2), generator=gen).double()
    else:
        out[:, :4] = torch.rand(n, 4, generator=gen, dtype=torch.float64)
    out[:, 4] = (torch.rand(n, generator=gen) < 0.5).double()
    return out


def epoch_plan(
    n: int, batch_size: int, batches: int, *, shuffle: bool, seed: int, epoch: int, transform: Transform | None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """An epoch's order of the ``n`` samples and each of its ``batches`` batches' augmentation
    parameters, drawn from one generator seeded with (seed, epoch)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    params = [draw_batch(transform, len(order[b * batch_size : (b + 1) * batch_size]), gen) for b in range(batches)]
    return order, params


def resized_crop_box(u: torch.Tensor | list[float], h: int, w: int, t: Transform) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a random resized crop of an ``h`` x ``w`` image from four uniforms."""
    area = h * w * (t.scale[0] + float(u[0]) * (t.scale[1] - t.scale[0]))
    lo, hi = math.log(t.ratio[0]), math.log(t.ratio[1])
    aspect = math.exp(lo + float(u[1]) * (hi - lo))
    cw = min(w, max(1, round(math.sqrt(area * aspect))))
    ch = min(h, max(1, round(math.sqrt(area / aspect))))
    top = min(h - ch, int(float(u[3]) * (h - ch + 1)))
    left = min(w - cw, int(float(u[2]) * (w - cw + 1)))
    return top, left, ch, cw


def evaluation_view(img: torch.Tensor, t: Transform) -> torch.Tensor:
    """The evaluation's transform of a uint8 (3, H, W) image: shorter side to ``resize``, centre crop
    ``center_crop`` (each skipped where the image already has that size)."""
    h, w = img.shape[-2:]
    if min(h, w) != t.resize:
        img = TF.resize(img, [t.resize], interpolation=_MODES[t.interpolation], antialias=True)
    if tuple(img.shape[-2:]) != (t.center_crop, t.center_crop):
        img = TF.center_crop(img, [t.center_crop, t.center_crop])
    return img


def train_view(img: torch.Tensor, p: torch.Tensor, t: Transform) -> torch.Tensor:
    """The training transform of one uint8 (3, H, W) image with its parameters ``p`` (a row of
    :func:`draw_batch`)."""
    if t.train == "random_resized_crop":
        top, left, ch, cw = resized_crop_box(p, int(img.shape[-2]), int(img.shape[-1]), t)
        out = TF.resized_crop(
            img, top, left, ch, cw, [t.size, t.size], interpolation=_MODES[t.interpolation], antialias=True
        )
    else:
        out = evaluation_view(img, t)
        if t.train == "random_crop":
            dy, dx, s = int(p[0]), int(p[1]), t.size
            out = F.pad(out, (t.padding,) * 4)[:, dy : dy + s, dx : dx + s]
    if t.flip and t.train != "none" and p[4] > 0.5:
        out = out.flip(-1)
    return out.contiguous()


def augment_batch(images: torch.Tensor, params: torch.Tensor, t: Transform) -> torch.Tensor:
    """The training transform of an in-memory uint8 batch (N, 3, H, W): ``random_crop`` on whole batches
    (tensor indexing, on the device that holds them), ``random_resized_crop`` image by image."""
    if t.train == "none":
        return images
    if t.train == "random_crop":
        flip = params[:, 4] > 0.5 if t.flip else torch.zeros(len(params), dtype=torch.bool)
        return crop_flip(images, params[:, :2].long(), flip, t.padding)
    return torch.stack([train_view(img, p, t) for img, p in zip(images.cpu(), params, strict=True)]).to(images.device)


def crop_flip(images: torch.Tensor, offs: torch.Tensor, flip: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop a uint8 batch (N, C, H, W) zero-padded by ``pad`` at ``offs`` (N, 2) and flip where ``flip``."""
    n, _, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = (offs[:, 0:1] + torch.arange(h)).to(dev)  # (n, h)
    cols = offs[:, 1:2] + torch.arange(w)  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols).to(dev)
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()
