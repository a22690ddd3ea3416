"""Time Grad-CAM of all K latent units: captum's loop, a plain loop, latentcam, and the floor.

Model: the paper-like VAE (4 conv blocks, base 32 channels -> 256 channels at 4x4 for 64 px,
8x8 for 128 px), built with ``build_model``, in eval mode, 16 images. For each image size,
head (linear = flatten + Linear, the paper; mlp = a nonlinear hidden layer) and K:

- captum: ``captum.attr.LayerGradCam`` called unit by unit (K forwards + K backwards);
- loop:   a plain per-unit loop (forward with a hook, ``autograd.grad`` of mu_k, Grad-CAM);
- ours:   ``latent_cams(model, x)`` (affine shortcut cached per model, as in a real run);
- cold:   ``latent_cams`` with its shortcut cache cleared (includes the one-image probe);
- fwd:    one forward pass under ``torch.no_grad()`` (the floor);
- fwd+bwd: one forward + one backward to the explained layer (one unit of the loop);
- dirs:   at K = 100, ``compute_cams`` of ``--directions`` latent directions mu . w at once
          (40 = one per CelebA attribute; random unit vectors: the time does not depend on
          their values), beside captum's loop over the same directions (``dirs captum``).

Medians of ``--repeats`` rounds after a warm-up, timed round-robin (each round runs every
variant once, so that load drifts hit all alike), ``torch.set_num_threads(--threads)``. Maps
are left at layer resolution (no upsampling). The last line printed is a JSON object with
the ratios the project tracks; other helpers' jobs make absolute times noisy, so compare
ratios measured in one run.

    python benchmarks/cam_speed.py            # 64 and 128 px, K = 5, 15, 50, 100 (a few minutes)
    python benchmarks/cam_speed.py --quick    # 64 px, K = 100, 3 repeats
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from latentcam.config import ModelConfig
from latentcam.explain import cam as cam_module
from latentcam.explain.cam import compute_cams, latent_cams
from latentcam.explain.targets import direction_targets
from latentcam.models.base import resolve_layer
from latentcam.models.registry import build_model


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeats: int
) -> tuple[dict[str, float], dict[str, object]]:
    """Median ms of each function, timed round-robin so that load drifts hit all alike.

    Returns the medians and each function's warm-up result (first-touch memory is slow on
    these machines, so every function runs once before timing).
    """
    results = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1000.0 * statistics.median(t) for name, t in times.items()}, results


def captum_loop(model: nn.Module, x: torch.Tensor, num_units: int) -> torch.Tensor:
    from captum.attr import LayerGradCam

    _, layer = resolve_layer(model, None)
    cam = LayerGradCam(lambda inp: model(inp).mu, layer)
    maps = [cam.attribute(x, target=k, relu_attributions=True) for k in range(num_units)]
    return torch.cat(maps, dim=1)


def plain_loop(model: nn.Module, x: torch.Tensor, units: range) -> torch.Tensor:
    """K x (forward with a hook capturing A, grad of mu_k w.r.t. A, Grad-CAM)."""
    _, layer = resolve_layer(model, None)
    maps = []
    captured: list[torch.Tensor] = []
    for k in units:
        captured.clear()
        handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            mu = model(x).mu
        finally:
            handle.remove()
        acts = captured[0]
        (grads,) = torch.autograd.grad(mu[:, k].sum(), acts)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        maps.append((weights * acts).sum(dim=1).relu().detach())
    return torch.stack(maps, dim=1)


def forward_only(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def ours_cold(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    cam_module._AFFINE_CACHE.clear()
    return latent_cams(model, x).maps


def captum_directions(model: nn.Module, x: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """captum's LayerGradCam of the scores mu . w_j, one direction per call."""
    from captum.attr import LayerGradCam

    _, layer = resolve_layer(model, None)
    cam = LayerGradCam(lambda inp: model(inp).mu @ vectors.T, layer)
    maps = [cam.attribute(x, target=j, relu_attributions=True) for j in range(vectors.shape[0])]
    return torch.cat(maps, dim=1)


def run(
    sizes: list[int], ks: list[int], repeats: int, n: int, directions: int = 40
) -> dict[str, float]:
    tracked: dict[str, float] = {}
    for size in sizes:
        for head in ("linear", "mlp"):
            for k in ks:
                torch.manual_seed(0)
                cfg = ModelConfig(
                    kind="vae",
                    image_size=size,
                    latent_dim=k,
                    num_layers=4,
                    base_channels=32,
                    max_channels=256,
                    head=head,
                )
                model = build_model(cfg).eval()
                x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))
                t, results = interleaved_medians(
                    {
                        "captum": lambda m=model, x=x, k=k: captum_loop(m, x, k),
                        "loop": lambda m=model, x=x, k=k: plain_loop(m, x, range(k)),
                        "ours": lambda m=model, x=x: latent_cams(m, x).maps,
                        "cold": lambda m=model, x=x: ours_cold(m, x),
                        "fwd": lambda m=model, x=x: forward_only(m, x),
                        "fwdbwd": lambda m=model, x=x: plain_loop(m, x, range(1)),
                    },
                    repeats,
                )
                ours, reference = results["ours"], results["captum"]
                assert isinstance(ours, torch.Tensor) and isinstance(reference, torch.Tensor)
                reference = reference.detach()
                err = float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12))
                print(
                    f"{size:4d} {head:6s} {k:4d} | captum {t['captum']:8.1f} | loop {t['loop']:8.1f} "
                    f"| ours {t['ours']:7.1f} | cold {t['cold']:7.1f} | fwd {t['fwd']:6.1f} "
                    f"| fwd+bwd {t['fwdbwd']:6.1f} | captum/ours {t['captum'] / t['ours']:6.1f}x "
                    f"| loop/ours {t['loop'] / t['ours']:6.1f}x | ours/fwd {t['ours'] / t['fwd']:5.2f} "
                    f"| max rel err {err:.1e}",
                    flush=True,
                )
                if k == 100 and directions:
                    vectors = torch.nn.functional.normalize(
                        torch.randn(directions, k, generator=torch.Generator().manual_seed(2)),
                        dim=1,
                    )
                    targets = direction_targets(vectors, [f"d{j}" for j in range(directions)])
                    td, dres = interleaved_medians(
                        {
                            "dirs": lambda m=model, x=x, t=targets: compute_cams(m, x, t).maps,
                            "captum": lambda m=model, x=x, v=vectors: captum_directions(m, x, v),
                            "fwd": lambda m=model, x=x: forward_only(m, x),
                        },
                        repeats,
                    )
                    ours_d, ref_d = dres["dirs"], dres["captum"]
                    assert isinstance(ours_d, torch.Tensor) and isinstance(ref_d, torch.Tensor)
                    err_d = float(
                        (ours_d.detach() - ref_d.detach()).abs().max()
                        / ref_d.detach().abs().max().clamp_min(1e-12)
                    )
                    print(
                        f"{size:4d} {head:6s} {k:4d} | {directions} directions | dirs {td['dirs']:7.1f} "
                        f"| dirs captum {td['captum']:8.1f} | fwd {td['fwd']:6.1f} "
                        f"| dirs/fwd {td['dirs'] / td['fwd']:5.2f} "
                        f"| captum/dirs {td['captum'] / td['dirs']:6.1f}x | max rel err {err_d:.1e}",
                        flush=True,
                    )
                    if size == 64:
                        name = "linear" if head == "linear" else "nonlinear"
                        key = f"directions{directions}_k100_{name}_64"
                        tracked[f"ours_over_forward_{key}"] = round(td["dirs"] / td["fwd"], 2)
                        tracked[f"captum_over_ours_{key}"] = round(td["captum"] / td["dirs"], 2)
                if k == 100 and size == 64:
                    name = "linear" if head == "linear" else "nonlinear"
                    tracked[f"captum_over_ours_k100_{name}_64"] = round(t["captum"] / t["ours"], 2)
                    if head == "linear":
                        tracked["ours_over_forward_k100_linear_64"] = round(t["ours"] / t["fwd"], 2)
    return tracked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128", help="image sizes, comma-separated")
    parser.add_argument("--ks", default="5,15,50,100", help="latent sizes K, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--n", type=int, default=16, help="images per batch")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="64 px, K = 100, 3 repeats")
    parser.add_argument(
        "--directions",
        type=int,
        default=40,
        help="latent directions explained at once at K = 100 (0 = skip; default: %(default)s)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [64] if args.quick else [int(s) for s in args.sizes.split(",")]
    ks = [100] if args.quick else [int(k) for k in args.ks.split(",")]
    repeats = 3 if args.quick else args.repeats
    print(
        f"all-K Grad-CAM, N={args.n} images, {args.threads} threads, medians of {repeats} runs (ms); "
        "paper-like VAE: 4 conv blocks, base 32, last block 256 channels",
        flush=True,
    )
    tracked = run(sizes, ks, repeats, args.n, args.directions)
    print(json.dumps(tracked))


if __name__ == "__main__":
    main()
