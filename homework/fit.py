"""
Can the model learn? Fit 1000 samples of random noise, half labelled 0 and half 1, through a
frozen random linear head, with AdamW on the model's trainable parameters:

    python -m homework.fit lora

With 1024 input dimensions and only 1000 samples, any model that trains at all overfits them
quickly: LoRA and QLoRA pass 80% accuracy in about a dozen full-batch steps.
"""

import torch

from .bignet import BIGNET_DIM
from .cli import UsageError, check_float, check_int, run
from .models import check_names, load_model, pick_device


def noise_classification(n_samples: int = 1000, seed: int = 0, device="cpu") -> tuple[torch.Tensor, torch.Tensor, torch.nn.Linear]:
    """Inputs, labels (first half 0, second half 1) and a frozen random head, the same for a given seed."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, BIGNET_DIM, generator=generator)
    labels = (torch.arange(n_samples) >= n_samples // 2).long()
    head = torch.nn.Linear(BIGNET_DIM, 2)
    with torch.no_grad():
        head.weight.copy_(torch.randn(2, BIGNET_DIM, generator=generator) / BIGNET_DIM**0.5)
        head.bias.zero_()
    return x.to(device), labels.to(device), head.requires_grad_(False).to(device)


def fit(model: torch.nn.Module, x, labels, head, steps: int = 50, lr: float = 1e-3, stop_at: float | None = None, log=print) -> float:
    """Full-batch AdamW steps; returns the best accuracy seen. Stops early once accuracy reaches `stop_at`."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise UsageError(f"{type(model).__name__} has no trainable parameters: there is nothing to fit")
    optimizer = torch.optim.AdamW(parameters, lr=lr)
    best = 0.0
    for step in range(1, steps + 1):
        logits = head(model(x))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
        best = max(best, accuracy)
        log(f"step {step:3d}  loss {loss.item():.4f}  accuracy {accuracy:.3f}")
        if stop_at is not None and accuracy >= stop_at:
            break
    return best


def main(model: str = "lora", device: str | None = None, checkpoint: str | None = None, steps: int = 50, lr: float = 1e-3, seed: int = 0):
    (name,) = check_names([model])
    steps, lr, seed = check_int("steps", steps, minimum=1), check_float("lr", lr, above=0), check_int("seed", seed, minimum=0)
    device = pick_device(device)
    torch.manual_seed(seed)  # the adapters' random init
    net = load_model(name, checkpoint, device)
    best = fit(net, *noise_classification(seed=seed, device=device), steps=steps, lr=lr)
    print(f"{name}: best accuracy {best:.3f} in {steps} steps")


if __name__ == "__main__":
    run(main)
