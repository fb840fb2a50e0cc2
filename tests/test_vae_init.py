"""training.vae_init.lsuv_init: every conv of a fresh Wan VAE ends with unit output std on the batch, the
zero-initialised attention projection stays an identity start, and the latent depends on the image more
than under PyTorch's default init (the reason it exists)."""
import torch

from salt_core.vae import WanVAE, vae_preset
from training.commands.vae import decode_unclamped
from training.vae_init import lsuv_init


def _clips(n=4):
    torch.manual_seed(0)
    base = torch.rand(n, 3, 1, 1, 1) * 2 - 1                      # one colour per clip, plus an object
    video = base.expand(n, 3, 5, 32, 32).clone()
    video[:, :, :, 8:16, 8:16] = -base[..., :1, :1, :1].expand(n, 3, 5, 8, 8)
    return video


def test_lsuv_gives_unit_output_std_and_an_image_dependent_latent():
    video = _clips()
    default = WanVAE(vae_preset("micro"))
    model = WanVAE(vae_preset("micro"))
    model.load_state_dict(default.state_dict())
    zero = [n for n, p in model.named_parameters() if n.endswith("proj.weight")]
    assert zero and all(not dict(model.named_parameters())[n].any() for n in zero)

    run = lambda: decode_unclamped(model, model.encode_moments(video)[0])  # noqa: E731
    count = lsuv_init(model, run, passes=3)
    assert count > 10
    outputs = {}  # conv -> every output of one forward (a conv runs once per chunk)
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)) and m.weight.any()]
    hooks = [m.register_forward_hook(lambda m, _i, o: outputs.setdefault(m, []).append(o.flatten().clone())) for m in convs]
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    stds = [float(torch.cat(outputs[m]).std()) for m in convs]
    assert len(stds) == count and all(0.8 < s < 1.25 for s in stds), stds
    assert all(not dict(model.named_parameters())[n].any() for n in zero)  # identity start kept

    with torch.no_grad():
        spread = lambda m: float(m.encode(video).std(0).mean())  # noqa: E731  latent spread over clips
        assert spread(model) > 3 * spread(default)
