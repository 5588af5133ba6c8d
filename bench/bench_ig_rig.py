"""IG across the K + 1 RIG networks against the forward + backward throughput bound, and
support-network training: K copies in one vmapped pass against plain training of one copy.

    python bench/bench_ig_rig.py [--device cpu] [--k 4] [--steps 32] [--archs embedded,resnet18]

Everything is timed in the same run on the same device. Weights: the shipped embedded model,
random for torchvision architectures (timing only).
The bound for IG: (K + 1) networks × steps path points, each needing one forward and one
backward per target, at the per-item forward and backward costs measured on full batches.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xai_core import dataset  # noqa: E402
from xai_core.engine import Engine  # noqa: E402
from xai_core.rig import training  # noqa: E402
from xai_core.methods.integrated_gradients import integrated_gradients  # noqa: E402
from timing import best_time  # noqa: E402


def build(arch: str) -> torch.nn.Module:
    if arch == "embedded":
        from xai_core.embedded import EmbeddedNet, load_embedded
        from xai_core.errors import CheckpointError

        try:
            return load_embedded()  # the shipped model (its width decides the cost)
        except CheckpointError:
            return EmbeddedNet(len(dataset.CLASSES)).eval()
    import torchvision

    return torchvision.models.get_model(arch, num_classes=len(dataset.CLASSES)).eval()


def per_item_costs(net: torch.nn.Module, batch: int, size: int, device: torch.device) -> tuple[float, float]:
    """Seconds per item for a forward pass and for one backward pass to the input, on full batches."""
    xs = torch.randn(batch, 3, size, size, device=device)

    def forward():
        with torch.no_grad():
            net(xs)

    def forward_backward():
        inputs = xs.clone().requires_grad_(True)
        torch.autograd.grad(net(inputs)[:, 0].sum(), inputs)

    t_fwd = best_time(forward, 3, device)
    t_both = best_time(forward_backward, 3, device)
    return t_fwd / batch, max(t_both - t_fwd, 0.0) / batch


def ig_row(arch: str, k: int, steps: int, device: torch.device) -> dict:
    net = build(arch).to(device)
    nets = [net] + [copy.deepcopy(net) for _ in range(k)]
    size = dataset.IMAGE_SIZE
    x = torch.randn(3, size, size, device=device)
    baseline = torch.zeros(1, 3, size, size, device=device)
    engine = Engine(device)
    targets = list(dataset.PART_PAIR)

    def all_networks():
        for module in nets:
            integrated_gradients(module, x, baseline, targets, steps=steps, rule="gausslegendre", engine=engine)

    actual = best_time(all_networks, 2, device)
    batch = engine.initial_batch(steps, "bound", None)
    fwd, bwd = per_item_costs(net, batch, size, device)
    bound = len(nets) * steps * (fwd + len(targets) * bwd)
    return {"arch": arch, "networks": len(nets), "steps": steps, "IG time s": actual, "bound s": bound,
            "actual / bound": actual / bound}


def multi_target_row(arch: str, steps: int, device: torch.device, targets: int = 2) -> dict:
    """Several targets from one forward: a backward per target (retained graph) against one
    batched vector-Jacobian product (``is_grads_batched``, the backward under vmap)."""
    net = build(arch).to(device)
    xs = torch.randn(steps, 3, dataset.IMAGE_SIZE, dataset.IMAGE_SIZE, device=device)

    def loop():
        inputs = xs.clone().requires_grad_(True)
        out = net(inputs)[:, :targets]
        for t in range(targets):
            torch.autograd.grad(out[:, t].sum(), inputs, retain_graph=t < targets - 1)

    def batched():
        inputs = xs.clone().requires_grad_(True)
        out = net(inputs)[:, :targets]
        seeds = torch.eye(targets, device=device).unsqueeze(1).expand(targets, steps, targets)
        torch.autograd.grad(out, inputs, grad_outputs=seeds, is_grads_batched=True)

    t_loop, t_batched = best_time(loop, 3, device), best_time(batched, 3, device)
    return {"arch": arch, "targets": targets, "points": steps, "backward per target s": t_loop,
            "is_grads_batched s": t_batched, "batched / loop": t_batched / t_loop}


def training_row(arch: str, k: int, n: int, batch: int, device: torch.device) -> dict:
    net = build(arch).to(device)
    images = torch.randn(n, 3, dataset.IMAGE_SIZE, dataset.IMAGE_SIZE)
    targets = torch.randn(k, n, len(dataset.CLASSES))
    kwargs = dict(lr=4e-5, epochs=1, batch_size=batch, seed=0, device=device, progress=None)
    t_one = best_time(lambda: training._fit_sequential(net, images, targets[:1], **kwargs), 1, device)
    t_batched = best_time(lambda: training._fit_batched(net, images, targets, **kwargs), 1, device)
    one = n / t_one
    together = k * n / t_batched
    return {"arch": arch, "K": k, "plain, one copy (img/s)": one, f"vmap, {k} copies (img·net/s)": together,
            "vmap / plain": together / one}


def show(rows: list[dict]) -> None:
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[key]:.3g}" if isinstance(row[key], float) else str(row[key]) for key in keys))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--k", type=int, default=4, help="support networks (α = 2, 4, 6, 8)")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--n", type=int, default=64, help="training images per timing")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--archs", default="embedded,resnet18")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    archs = args.archs.split(",")
    print(f"device {device}, torch threads {torch.get_num_threads()}, image {dataset.IMAGE_SIZE}px\n")
    print("IG, two classes, on all K + 1 networks")
    show([ig_row(a, args.k, args.steps, device) for a in archs])
    print("Several targets from one forward pass")
    show([multi_target_row(a, args.steps, device) for a in archs])
    print("Support-network training throughput")
    show([training_row(a, args.k, args.n, args.batch, device) for a in archs])


if __name__ == "__main__":
    main()
