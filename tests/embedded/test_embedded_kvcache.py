"""The reserved KV cache holds exactly what Hugging Face's concatenating cache holds, and
the decode loop appends in place instead of copying the cache at every token."""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

import nemo_coreward.embedded.rollout as rollout
from nemo_coreward.embedded.kvcache import ReservedLayer, reserve


def _kv(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 2, length, 4, generator=g),
            torch.randn(batch, 2, length, 4, generator=g))


def test_reserved_layer_equals_dynamic_layer_through_every_cache_operation():
    plain = DynamicLayer()
    plain.update(*_kv(3, 5, 0))
    reserved = ReservedLayer(plain.keys.clone(), plain.values.clone(), room=3)
    steps = [("update", _kv(3, 1, 1)), ("repeat", 2), ("update", _kv(6, 1, 2)),
             ("select", torch.tensor([0, 2, 5])), ("update", _kv(3, 2, 3)),
             ("update", _kv(3, 1, 4)),  # past the reserved room: grows
             ("crop", -2), ("update", _kv(3, 1, 5)), ("reorder", torch.tensor([2, 0, 1])),
             ("update", _kv(3, 1, 6))]
    for op, arg in steps:
        for layer in (plain, reserved):
            if op == "update":
                out = layer.update(*arg)
            elif op == "repeat":
                layer.batch_repeat_interleave(arg)
            elif op == "select":
                layer.batch_select_indices(arg)
            elif op == "reorder":
                layer.reorder_cache(arg)
            else:
                layer.crop(arg)
        assert torch.equal(reserved.keys, plain.keys), op
        assert torch.equal(reserved.values, plain.values), op
        assert reserved.get_seq_length() == plain.get_seq_length()
        assert reserved.get_mask_sizes(1) == plain.get_mask_sizes(1)
        if op == "update":
            assert torch.equal(out[0], plain.keys)


def test_reset_empties_the_layer_and_the_next_update_starts_afresh():
    layer = ReservedLayer(*_kv(2, 4, 0), room=2)
    layer.reset()
    assert layer.get_seq_length() == 0
    keys, values = _kv(2, 1, 1)
    assert torch.equal(layer.update(keys, values)[0], keys)


def test_appends_within_the_room_write_into_one_buffer():
    layer = ReservedLayer(*_kv(2, 4, 0), room=4)
    storage = layer.keys.untyped_storage().data_ptr()
    for i in range(4):
        layer.update(*_kv(2, 1, i + 1))
    assert layer.keys.untyped_storage().data_ptr() == storage
    assert layer.get_seq_length() == 8


def test_reserve_replaces_plain_layers_in_place_and_keeps_the_cache_object():
    cache = DynamicCache()
    cache.update(*_kv(2, 3, 0), layer_idx=0)
    cache.update(*_kv(2, 3, 1), layer_idx=1)
    keys = cache.layers[1].keys.clone()
    assert reserve(cache, 5) is cache
    assert all(type(layer) is ReservedLayer for layer in cache.layers)
    assert torch.equal(cache.layers[1].keys, keys)
    cache.batch_select_indices(torch.tensor([1]))
    assert cache.get_seq_length() == 3 and cache.layers[0].keys.shape[0] == 1


def test_the_decode_loop_reserves_room_for_the_response(tiny, monkeypatch):
    """Without ``reserve`` the loop would still be right (the plain-loop test checks the
    tokens) but would copy the cache at every token: this pins that it is used."""
    model, tok = tiny
    seen = []

    def spy(cache, room):
        seen.append(room)
        return reserve(cache, room)

    monkeypatch.setattr(rollout, "reserve", spy)
    ids, mask = rollout.encode_prompts(tok, ["1 + 1 =", "2 + 2 ="], 64)
    rollout.sample(model, tok, ids, mask, rollout.SamplingConfig(n=2, max_new_tokens=6))
    assert seen == [6]
