"""Our umT5 encoder equals transformers' UMT5EncoderModel (an independent implementation) on the same
weights, keeps padding out of the real tokens' states, and builds the real umT5-XXL geometry."""
import pytest
import torch

from salt_core.text.umt5 import UMT5Encoder, official_to_transformers_name, relative_position_buckets, umt5_preset

from _umt5_helpers import randomised_encoder, tiny_config, transformers_config, transformers_encoder
from conftest import rel_err

transformers = pytest.importorskip("transformers",
                                   reason="transformers is the test-only oracle: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def pair():
    ours = randomised_encoder(tiny_config(), seed=1)
    return ours, transformers_encoder(ours)


@torch.no_grad()
@pytest.mark.parametrize("length", [1, 7, 40])   # 40 tokens: log-spaced buckets and the clamp past max_distance=16
def test_forward_matches_transformers_umt5(pair, length):
    ours, theirs = pair
    g = torch.Generator().manual_seed(length)
    ids = torch.randint(0, ours.config.vocab_size, (3, length), generator=g)
    mask = torch.ones(3, length, dtype=torch.bool)
    mask[1, max(1, length // 2):] = False
    mask[2, 1:] = False
    a = ours(ids, mask)
    b = theirs(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    real = mask.unsqueeze(-1)
    assert rel_err(a * real, b * real) <= 1e-4
    assert a.abs().max() > 0.1   # not a vacuous match


def test_relative_buckets_match_transformers(pair):
    _, theirs = pair
    attn = theirs.encoder.block[0].layer[0].SelfAttention
    for length in (5, 40, 300):
        pos = torch.arange(length)
        expected = attn._relative_position_bucket(pos[None, :] - pos[:, None])
        c = tiny_config()
        assert torch.equal(relative_position_buckets(length, c.num_buckets, c.max_distance), expected)


def test_every_layer_has_its_own_position_bias(pair):
    ours, theirs = pair
    assert all(hasattr(b.pos_embedding, "embedding") for b in ours.blocks)
    assert not torch.equal(ours.blocks[0].pos_embedding.embedding.weight, ours.blocks[1].pos_embedding.embedding.weight)
    assert all(blk.layer[0].SelfAttention.has_relative_attention_bias for blk in theirs.encoder.block)


@torch.no_grad()
def test_padding_does_not_change_the_real_tokens_and_is_zero():
    model = randomised_encoder(tiny_config(), seed=2)
    ids = torch.randint(3, 128, (1, 9))
    alone = model(ids, torch.ones(1, 9, dtype=torch.bool))
    padded_ids = torch.cat([ids, torch.randint(0, 128, (1, 23))], dim=1)
    mask = torch.zeros(1, 32, dtype=torch.bool)
    mask[:, :9] = True
    padded = model(padded_ids, mask)
    assert rel_err(padded[:, :9], alone) <= 1e-5
    assert torch.count_nonzero(padded[:, 9:]) == 0


def test_bad_inputs_are_refused():
    model = UMT5Encoder(tiny_config())
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 128\)"):
        model(torch.tensor([[5, 128]]), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one real token"):
        model(torch.tensor([[5, 6]]), torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        model(torch.tensor([5, 6]), torch.ones(2, dtype=torch.bool))


# umT5-XXL as published: 24 blocks x 10 tensors + embedding + final norm = 242 tensors;
# 256384*4096 + 24*(4*4096*4096 + 3*4096*10240 + 2*4096 + 32*64) + 4096 = 5,680,910,336 parameters,
# i.e. 11.36 GB in bf16 (Wan's models_t5_umt5-xxl-enc-bf16.pth is 11.4 GB).
XXL_TENSORS = 242
XXL_PARAMS = 5_680_910_336


def test_real_umt5_xxl_geometry_on_meta_matches_transformers():
    c = umt5_preset("umt5-xxl")
    with torch.device("meta"):
        ours = UMT5Encoder(c)
        theirs = transformers.UMT5EncoderModel(transformers_config(c))
    state = ours.state_dict()
    assert len(state) == XXL_TENSORS
    assert sum(v.numel() for v in state.values()) == XXL_PARAMS
    assert state["token_embedding.weight"].shape == (256384, 4096)
    assert state["blocks.23.ffn.gate.0.weight"].shape == (10240, 4096)
    assert state["blocks.23.pos_embedding.embedding.weight"].shape == (32, 64)
    their_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items() if k != "encoder.embed_tokens.weight"}
    assert {official_to_transformers_name(k): tuple(v.shape) for k, v in state.items()} == their_shapes
