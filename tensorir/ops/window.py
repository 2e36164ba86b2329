"""Sliding-window geometry (convolution and pooling) and its affine input expressions.

:func:`window_geometry` computes a window's output size and padding from ``auto_pad``,
``pads``, ``strides``, ``dilations`` and ``ceil_mode`` (ONNX's formulas); the result,
:class:`WindowGeometry`, says where each output position and kernel tap reads, and
:func:`window_input_exprs` writes that as the affine input index of an iteration domain.
The attribute readers (:func:`auto_pad_of`, :func:`int_list_attr`, :func:`explicit_pads`),
the SAME_* padding split (:func:`split_padding`), :func:`static_spatial` and
:func:`spatial_names` serve the window ops of :mod:`.contraction` and :mod:`.pooling`;
ConvTranspose's geometry shares the fields of :class:`StridedGeometry`.

:func:`tile_pads` gives the explicit padding that evaluates one tile of a window op on the
part of its input box inside the tensor (tile evaluation, :mod:`tensorir.tile_eval`).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .. import dims as _dims
from .domain import AffineExpr
from .registry import OpContext

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def auto_pad_of(ctx: OpContext) -> str:
    """The ``auto_pad`` attribute as a str (ONNX stores it as bytes), validated."""
    value = ctx.attr("auto_pad")
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    value = str(value)
    if value not in AUTO_PADS:
        raise ctx.fail(f"auto_pad must be one of {', '.join(AUTO_PADS)}, got {value!r}")
    return value


def int_list_attr(ctx: OpContext, key: str, length: int, default: int) -> tuple[int, ...]:
    """An int-list attribute of ``length`` entries (``default`` each when absent)."""
    value = ctx.attr(key)
    if value is None:
        return (default,) * length
    value = tuple(int(v) for v in np.asarray(value).reshape(-1))
    if len(value) != length:
        raise ctx.fail(f"attribute {key} has {len(value)} entries, expected {length}")
    return value


def static_spatial(ctx: OpContext, operand: int, start: int = 2) -> tuple[int, ...]:
    """The spatial dims (from ``start``) of an operand, which must be concrete."""
    shape = ctx.shape(operand)
    return tuple(_dims.require_static(d, f"{ctx.label}: spatial dim {start + j} of operand "
                                         f"{operand} ({ctx.type(operand)})")
                 for j, d in enumerate(shape[start:]))


class StridedGeometry(NamedTuple):
    """Kernel, strides, dilations, pads and output size per spatial dim of a strided kernel op:
    position ``p`` of its strided side and kernel tap ``k`` meet at
    ``p*strides + k*dilations - pads_begin`` on the padded side."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    out: tuple[int, ...]


class WindowGeometry(StridedGeometry):
    """Where a sliding window (convolution or pooling) reads, per spatial dim.

    Output position ``o`` and kernel tap ``k`` read input position
    ``o*strides + k*dilations - pads_begin``; positions outside ``[0, in)`` are padding.
    """

    __slots__ = ()

    @property
    def effective_kernel(self) -> tuple[int, ...]:
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))

    def extra_end_padding(self, in_spatial: Sequence[int]) -> tuple[int, ...]:
        """Padding past ``pads_end`` that ceil_mode's last window needs to stay in bounds."""
        return tuple(max(0, (o - 1) * s + e - (i + b + p))
                     for o, s, e, i, b, p in zip(self.out, self.strides, self.effective_kernel,
                                                  in_spatial, self.pads_begin, self.pads_end))


def explicit_pads(ctx: OpContext, r: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ``pads`` attribute (``[x1_begin, ..., x1_end, ...]``, zeros when absent) as
    (begin, end), each of ``r`` entries; a ShapeError for a negative pad."""
    pads = int_list_attr(ctx, "pads", 2 * r, 0)
    if any(p < 0 for p in pads):
        raise ctx.fail(f"pads must be >= 0, got {list(pads)}")
    return pads[:r], pads[r:]


def split_padding(auto_pad: str, total: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Total padding per dim split into (begin, end) as ONNX's SAME_* auto_pad does: evenly,
    the odd unit at the end for SAME_UPPER and at the beginning otherwise."""
    if auto_pad == "SAME_UPPER":
        begin = tuple(t // 2 for t in total)
    else:
        begin = tuple(t - t // 2 for t in total)
    return begin, tuple(t - b for t, b in zip(total, begin))


def window_geometry(ctx: OpContext, in_spatial: Sequence[int], kernel: Sequence[int],
                    ceil_mode: bool = False) -> WindowGeometry:
    """Output size and padding of a convolution or pooling window (ONNX's formulas).

    NOTSET: ``out = floor((in + pads - eff) / s) + 1`` (``ceil`` with ceil_mode, dropping a last
    window that would start in the end padding; with ceil_mode a window that overhangs the
    padded input by less than a stride still counts, as in onnxruntime); SAME_*:
    ``out = ceil(in / s)`` with ``max(0, (out-1)*s + eff - in)`` padding split evenly, the
    odd unit at the end for SAME_UPPER and at the beginning for SAME_LOWER; VALID: no padding,
    ``out = floor((in - eff) / s) + 1``. ``eff = (k-1)*dilation + 1``. ceil_mode does not change
    the auto_pad sizes (the spec's ceil forms give the same numbers).
    """
    r = len(in_spatial)
    strides = int_list_attr(ctx, "strides", r, 1)
    dilations = int_list_attr(ctx, "dilations", r, 1)
    if any(s < 1 for s in strides):
        raise ctx.fail(f"strides must be >= 1, got {list(strides)}")
    if any(d < 1 for d in dilations):
        raise ctx.fail(f"dilations must be >= 1, got {list(dilations)}")
    if any(k < 1 for k in kernel):
        raise ctx.fail(f"kernel dims must be >= 1, got {list(kernel)}")
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    auto_pad = auto_pad_of(ctx)
    if auto_pad == "NOTSET":
        begin, end = explicit_pads(ctx, r)
        out = []
        for i in range(r):
            span = in_spatial[i] + begin[i] + end[i] - eff[i]
            if ceil_mode and span > -strides[i]:
                # ONNX's ceil form (onnxruntime agrees): one window still fits when it
                # overhangs the end by less than a stride
                o = _dims.ceil_div(span, strides[i]) + 1
                if (o - 1) * strides[i] >= in_spatial[i] + begin[i]:
                    o -= 1  # the last window would start in the end padding: ignored
                out.append(o)
            elif span < 0:
                out.append(0)
            else:
                out.append(span // strides[i] + 1)
    elif auto_pad == "VALID":
        begin = end = (0,) * r
        out = [max(0, (in_spatial[i] - eff[i]) // strides[i] + 1) if in_spatial[i] >= eff[i]
               else 0 for i in range(r)]
    else:
        out = [_dims.ceil_div(in_spatial[i], strides[i]) for i in range(r)]
        total = [max(0, (out[i] - 1) * strides[i] + eff[i] - in_spatial[i]) for i in range(r)]
        begin, end = split_padding(auto_pad, total)
    if any(o < 1 for o in out):
        raise ctx.fail(f"the window (kernel {list(kernel)}, dilations {list(dilations)}) does "
                       f"not fit the spatial dims {list(in_spatial)} with pads "
                       f"{list(begin) + list(end)}: output spatial dims would be {list(out)}",
                       operand=0)
    return WindowGeometry(tuple(kernel), strides, dilations, tuple(begin), tuple(end),
                          tuple(out))


def spatial_names(prefix: str, r: int) -> list[str]:
    """Loop-dim names for ``r`` spatial dims: ``ow``; ``oh, ow``; ``od, oh, ow``; else o0..."""
    base = {1: ["w"], 2: ["h", "w"], 3: ["d", "h", "w"]}.get(r)
    return [prefix + b for b in base] if base else [f"{prefix or 's'}{i}" for i in range(r)]


def window_input_exprs(n_loops: int, out_idx: Sequence[int], k_idx: Sequence[int],
                       geo: StridedGeometry) -> list[AffineExpr]:
    """``o*stride + k*dilation - pad_begin`` per spatial dim, over ``n_loops`` loop dims."""
    exprs = []
    for o, k, s, d, p in zip(out_idx, k_idx, geo.strides, geo.dilations, geo.pads_begin):
        coeffs = [0] * n_loops
        coeffs[o] = s
        coeffs[k] = d
        exprs.append(AffineExpr(tuple(coeffs), -p))
    return exprs


class TilePads(NamedTuple):
    """The padding of one tile of a window op, per spatial dim: ``begin`` (the tile's input box
    below 0), ``end`` (past the input but inside the op's explicit end padding) and ``extra``
    (past that, where only ceil_mode's last window reaches)."""

    begin: tuple[int, ...]
    end: tuple[int, ...]
    extra: tuple[int, ...]

    def attrs(self, with_extra: bool = True) -> dict:
        """``auto_pad`` NOTSET and explicit ``pads``; with ``with_extra`` the extra part is
        padded too, so that the floor formula (no ceil_mode) gives exactly the tile's output
        size."""
        end = tuple(e + x for e, x in zip(self.end, self.extra)) if with_extra else self.end
        return {"auto_pad": "NOTSET", "pads": self.begin + end}


def tile_pads(geo: StridedGeometry, in_spatial: Sequence[int],
              box: Sequence[tuple[int, int]]) -> TilePads:
    """The padding that evaluates one tile of a window op on its clipped input box.

    ``box`` is the unclipped ``(start, stop)`` per spatial dim that the input map reaches from
    the tile (``o*stride + k*dilation - pad_begin`` over the tile's positions and taps); the
    part of it outside ``[0, in)`` is padding, split by where it lies (:class:`TilePads`). The
    tile never needs ceil_mode: with all of it as explicit pads the floor formula gives its
    output size (and ceil_mode's drop rule would lose a tile's last window when that window
    lies wholly in the end padding, as windows before the whole op's last may).
    """
    begin, end, extra = [], [], []
    for (lo, stop), n, pe in zip(box, in_spatial, geo.pads_end):
        begin.append(max(0, min(stop, 0) - lo))
        end.append(max(0, min(stop, n + pe) - max(lo, n)))
        extra.append(max(0, stop - max(lo, n + pe)))
    return TilePads(tuple(begin), tuple(end), tuple(extra))
