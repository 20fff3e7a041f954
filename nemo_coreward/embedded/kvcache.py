"""A KV cache that reserves room for the whole response instead of growing by concatenation.

Hugging Face's ``DynamicLayer.update`` appends a token with ``torch.cat``: every decode
step copies every layer's whole cache (on the CPU demo, 60 tensors of 64 rows x ~100
positions per token, about 8% of generation time). ``ReservedLayer`` keeps the same
contract on a buffer allocated once with ``room`` more positions than it holds: an append
writes the new positions in place and ``keys``/``values`` are views of the filled part.

The contract relied on (transformers 5.x ``cache_utils``, read for this version):
- ``Cache.layers`` is a list of ``CacheLayerMixin``; ``DynamicCache`` calls each layer's
  ``update``, ``get_seq_length``, ``batch_select_indices``, ``batch_repeat_interleave``
  and ``crop``;
- ``DynamicLayer.update(k, v)`` appends along dim -2 of (batch, heads, positions, dim) and
  returns the whole keys and values; ``get_seq_length`` reads ``keys.shape[-2]`` and
  ``get_mask_sizes`` derives from it; attention only reads the returned tensors.
The views returned have the same values, shapes and dtypes as the concatenated tensors;
tests compare both layers operation by operation and the decode loop against a plain loop
of full forwards. Older transformers (no ``Cache.layers``) and layers that are not plain
``DynamicLayer`` (sliding windows) are left as they are.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

try:
    from transformers.cache_utils import DynamicLayer
except ImportError:  # older transformers: no per-layer cache objects, nothing to replace
    DynamicLayer = None


class _Reserved:
    """Keys or values in a (B, H, capacity, D) buffer; ``view`` is the filled part."""

    def __init__(self, filled: Tensor, room: int) -> None:
        b, h, n, d = filled.shape
        self.buffer = filled.new_empty(b, h, n + room, d)
        self.buffer[:, :, :n] = filled
        self.length = n

    def append(self, new: Tensor) -> Tensor:
        end = self.length + new.shape[-2]
        if end > self.buffer.shape[-2]:  # more than reserved: grow, as DynamicLayer would
            grown = self.buffer.new_empty(*self.buffer.shape[:2], 2 * end, self.buffer.shape[3])
            grown[:, :, :self.length] = self.view
            self.buffer = grown
        self.buffer[:, :, self.length:end] = new
        self.length = end
        return self.view

    @property
    def view(self) -> Tensor:
        return self.buffer[:, :, :self.length]

    def select(self, rows: Tensor) -> None:
        self.buffer = self.buffer.index_select(0, rows)

    def repeat(self, repeats: int) -> None:
        self.buffer = self.buffer.repeat_interleave(repeats, dim=0)


if DynamicLayer is not None:
    class ReservedLayer(DynamicLayer):
        """``DynamicLayer`` with ``room`` positions reserved after what it already holds."""

        def __init__(self, keys: Tensor, values: Tensor, room: int) -> None:
            super().__init__()
            self.device = keys.device
            self._k, self._v = _Reserved(keys, room), _Reserved(values, room)
            self.keys, self.values = self._k.view, self._v.view
            self.is_initialized = True

        def _sync(self) -> tuple[Tensor, Tensor]:
            self.keys, self.values = self._k.view, self._v.view
            return self.keys, self.values

        def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any
                   ) -> tuple[Tensor, Tensor]:
            self._k.append(key_states)
            self._v.append(value_states)
            return self._sync()

        def batch_select_indices(self, indices: Tensor) -> None:
            self._k.select(indices)
            self._v.select(indices)
            self._sync()

        def batch_repeat_interleave(self, repeats: int) -> None:
            self._k.repeat(repeats)
            self._v.repeat(repeats)
            self._sync()

        def reorder_cache(self, beam_idx: Tensor) -> None:
            self.batch_select_indices(beam_idx)

        def reset(self) -> None:
            """Empty, keeping the reserved buffers (``DynamicLayer.reset`` would drop the
            views and leave the buffers behind)."""
            self._k.length = self._v.length = 0
            self._sync()

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove > 0:
                raise ValueError("crop takes a negative number of positions to remove")
            for part in (self._k, self._v):
                part.length = max(0, part.length + tokens_to_remove)
            self._sync()


def reserve(cache: Any, room: int) -> Any:
    """Give every plain dynamic layer of ``cache`` room for ``room`` more positions, in
    place (the same cache object, so the model keeps using it); returns ``cache``."""
    layers = getattr(cache, "layers", None)
    if DynamicLayer is None or not isinstance(layers, list):
        return cache
    for i, layer in enumerate(layers):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
            layers[i] = ReservedLayer(layer.keys, layer.values, room)
    return cache
