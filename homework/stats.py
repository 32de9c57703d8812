"""
Parameter counts and memory of one or more models, side by side:

    python -m homework.stats bignet half_precision lora low_precision qlora lower_precision

Theoretical memory  what the model's parameters and buffers take, from their sizes and dtypes.
Actual memory       what the allocator handed out while the model was loaded and moved to the
                    device, and still holds: every tensor the model keeps, hidden ones included.
Forward memory      the peak allocated during one forward pass of a batch (default 1024 inputs)
                    under torch.no_grad(), above what the model and the batch already hold:
                    activations, the output, and temporaries such as dequantized weights.
Backward memory     the same for a forward and backward pass of that batch (loss: the mean output),
                    including the gradients it leaves on the trainable parameters.
MB means 2**20 bytes, M a million parameters.
"""

import torch

from .cli import check_device, check_int, check_names, run, show_written
from .data import random_inputs
from .memory import MB, AllocationTrace, measurable, parameter_counts, theoretical_bytes
from .models import NotWritten, load_model, or_not_written

ROWS = (
    "Trainable params",
    "Non-trainable params",
    "Total params",
    "Theoretical memory",
    "Actual memory",
    "Forward memory",
    "Backward memory",
)


def model_stats(name: str, device: torch.device | str = "cpu", checkpoint=None, batch_size: int = 1024) -> dict[str, str]:
    """One column of the table: each row's figure as printed."""
    with AllocationTrace() as loading:
        model = load_model(name, checkpoint, device)
    trainable, frozen = parameter_counts(model)
    x = random_inputs(batch_size, seed=0, device=device)

    with torch.no_grad():
        model(x)  # warm-up: a device's first matmul allocates library workspaces (cuBLAS) that are not the model's
        with AllocationTrace() as forward:
            model(x)

    if trainable:
        with AllocationTrace() as backward:
            model(x).mean().backward()
        backward_memory = f"{backward.peak / MB:.2f} MB"
    else:
        backward_memory = "nothing to train"

    return {
        "Trainable params": f"{trainable / 1e6:.2f} M",
        "Non-trainable params": f"{frozen / 1e6:.2f} M",
        "Total params": f"{(trainable + frozen) / 1e6:.2f} M",
        "Theoretical memory": f"{theoretical_bytes(model) / MB:.2f} MB",
        "Actual memory": f"{loading.net / MB:.2f} MB",
        "Forward memory": f"{forward.peak / MB:.2f} MB",
        "Backward memory": backward_memory,
    }


def format_table(columns: dict[str, dict[str, str] | NotWritten], rows=ROWS, min_width: int = 16) -> str:
    """One column per model (one not written yet says so in every row), one line per row: the layout every memory table here prints."""
    cells = {name: dict.fromkeys(rows, c.cell) if isinstance(c, NotWritten) else c for name, c in columns.items()}
    label = max(len(row) for row in rows) + 2
    width = max(min_width, *(len(name) + 2 for name in cells))  # one for all, but wider where a column's cells need it
    widths = {name: max(width, *(len(cell) + 2 for cell in column.values())) for name, column in cells.items()}
    lines = [" " * label + "".join(f"{name:>{widths[name]}}" for name in cells)]
    for row in rows:
        lines.append(f"{row:<{label}}" + "".join(f"{column[row]:>{widths[name]}}" for name, column in cells.items()))
    return "\n".join(lines)


def main(*models: str, device: str | None = None, checkpoint: str | None = None, batch_size: int = 1024):
    names = check_names(models or ["bignet"])
    batch_size = check_int("batch_size", batch_size, minimum=1)
    device, note = measurable(check_device(device))
    if note:
        print(note)
    columns = {name: or_not_written(model_stats, name, device, checkpoint, batch_size) for name in names}
    show_written(columns, lambda shown: print(format_table(shown)))


if __name__ == "__main__":
    run(main)
