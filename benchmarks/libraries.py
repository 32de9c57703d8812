"""
The homework's variants beside the libraries practitioners use, on the same BigNet checkpoints and
the same fixed-seed inputs, in one run (a benchmark, not a test):

    pip install -r benchmarks/requirements.txt
    python -m benchmarks.libraries [--repeats 3] [--out benchmarks/results]

Prints a markdown table (also written to OUT/libraries.md), plots output error against bits per
weight (OUT/error_vs_bits.png), and checks the homework's LoRA against peft's on the same frozen
half-precision base. A library that is missing or fails gets a row that says why.

- bits/weight: every byte the model keeps (parameters, buffers, and what a library keeps beside
  them, e.g. bitsandbytes' QuantState) * 8 / BigNet's 18,903,040 parameters: biases and LayerNorms included.
- measured MB: what PyTorch's allocator still holds after loading (homework.memory.AllocationTrace).
- mean / max diff: |output - float32 BigNet's output| on random_inputs(1024, seed=0), for each weight family.
- fwd b=1, b=1024: forward time as a ratio to float32 BigNet's, the two timed alternately in this run.
- fwd peak MB: the most allocated during a 1024-input forward pass, above the loaded model.
"""

import importlib
import time
from pathlib import Path

import fire
import torch

from benchmarks.speed import timed_against
from homework import checkpoint, fit
from homework.bignet import BigNet, LayerNorm, make_checkpoint
from homework.data import noise_classification, random_inputs
from homework.memory import MB, AllocationTrace
from homework.optim import DEFAULT_OPTIMIZER, make_optimizer

PARAMETERS = 18_903_040
FAMILIES = checkpoint.FAMILIES  # default, gaussian, heavy_tailed


def family_checkpoints(seed: int = 0) -> dict[str, Path]:
    """{family: BigNet's checkpoint of that weight family}, made on first use in checkpoints/."""
    paths = {family: checkpoint.DEFAULT_PATH.with_name(f"seed{seed}-{family}.pth") for family in FAMILIES}
    for family, path in paths.items():
        if not path.exists():
            make_checkpoint(path, seed, family)
    return paths


def homework_model(module: str):
    return lambda path: importlib.import_module(f"homework.{module}").load(path)


def bitsandbytes_model(quant_type: str, double_quant: bool):
    def build(path):
        import bitsandbytes

        def make_linear(i, o):
            return bitsandbytes.nn.Linear4bit(i, o, compute_dtype=torch.float32, quant_type=quant_type, compress_statistics=double_quant)

        net = BigNet(make_linear)
        net.load_state_dict(checkpoint.read(path))
        return net.to("cpu")  # bitsandbytes quantizes when the weights move to their device

    return build


def hqq_model(bits: int, group_size: int = 64):
    def build(path):
        from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

        net = homework_model("bignet")(path)
        config = BaseQuantizeConfig(nbits=bits, group_size=group_size)
        for block in net.model:
            if isinstance(block, BigNet.Block):
                for i, layer in enumerate(block.model):
                    if isinstance(layer, torch.nn.Linear):
                        block.model[i] = HQQLinear(layer, config, compute_dtype=torch.float32, device="cpu")
        return net

    return build


SCHEMES = {
    "bignet (float32)": homework_model("bignet"),
    "half_precision": homework_model("half_precision"),
    "lora": homework_model("lora"),
    "low_precision (4-bit, group 16)": homework_model("low_precision"),
    "qlora": homework_model("qlora"),
    "lower_precision": homework_model("lower_precision"),
    "bitsandbytes NF4": bitsandbytes_model("nf4", False),
    "bitsandbytes NF4 + double quant": bitsandbytes_model("nf4", True),
    "bitsandbytes FP4": bitsandbytes_model("fp4", False),
    "bitsandbytes FP4 + double quant": bitsandbytes_model("fp4", True),
    "HQQ 4-bit, group 64": hqq_model(4),
    "HQQ 3-bit, group 64": hqq_model(3),
}


def stored_bytes(model: torch.nn.Module) -> int:
    """Bytes of every tensor the model keeps, found through its modules' attributes, each counted once."""
    sizes = {}

    def visit(value, depth: int) -> None:
        if isinstance(value, torch.Tensor):
            sizes[value.data_ptr()] = value.numel() * value.element_size()
            value = getattr(value, "quant_state", None)  # bitsandbytes keeps scales beside its codes
        if isinstance(value, torch.nn.Module) or depth > 4 or value is None:
            return  # modules are visited on their own
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        elif hasattr(value, "__dict__") and not isinstance(value, type):
            children = vars(value).values()
        else:
            return
        for child in children:
            visit(child, depth + 1)

    for module in model.modules():
        for child in vars(module).values():
            visit(child, 0)
    sizes.pop(0, None)  # empty tensors
    return sum(sizes.values())


def forward_ratio(model, baseline, x: torch.Tensor, repeats: int, inner: int) -> float:
    """The model's forward time as a ratio to float32 BigNet's, the two timed alternately (benchmarks.speed.timed_against)."""
    return timed_against(model, baseline, x, repeats, inner)[1]


@torch.no_grad()
def measure(build, path: Path, reference: torch.Tensor, inputs: torch.Tensor, repeats: int, baseline=None) -> dict:
    """One scheme on one checkpoint; with `baseline` (float32 BigNet), its forward times and peak memory too."""
    start = time.perf_counter()
    with AllocationTrace() as trace:
        model = build(path)
    stored = stored_bytes(model)
    row = {
        "load s": time.perf_counter() - start,
        "bits/weight": stored * 8 / PARAMETERS,
        "theoretical MB": stored / MB,
        "measured MB": trace.net / MB,
    }
    diff = (model(inputs) - reference).abs()
    row["mean diff"], row["max diff"] = diff.mean().item(), diff.max().item()
    if baseline is not None:
        row["fwd b=1"] = forward_ratio(model, baseline, inputs[:1], repeats, inner=20)
        row["fwd b=1024"] = forward_ratio(model, baseline, inputs, repeats, inner=2)
        with AllocationTrace() as trace:
            model(inputs)
        row["fwd peak MB"] = trace.peak / MB
    return row


def compare_all(paths: dict[str, Path], repeats: int) -> dict[str, dict]:
    inputs = random_inputs(1024, seed=0)
    with torch.no_grad():
        references = {family: homework_model("bignet")(path)(inputs) for family, path in paths.items()}
    baseline = homework_model("bignet")(paths["default"])
    with AllocationTrace():  # the profiler's one-time start-up
        pass
    rows = {}
    for name, build in SCHEMES.items():
        try:
            build(paths["default"])  # warm-up: the library's import and first-use setup are not load time
            row = measure(build, paths["default"], references["default"], inputs, repeats, baseline)
            for family in FAMILIES[1:]:
                row[f"mean diff {family}"] = measure(build, paths[family], references[family], inputs, repeats)["mean diff"]
        except Exception as e:  # not installed, or fails on this machine: say why, go on
            row = {"error": failure(e)}
        rows[name] = row
        summary = row["error"] if "error" in row else f"{row['bits/weight']:.2f} bits/weight, mean diff {row['mean diff']:.4f}"
        print(f"  {name}: {summary}", flush=True)
    return rows


def failure(error: Exception) -> str:
    """Why a scheme did not run, in one short line."""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:120]


def markdown_table(columns: list[str], rows: dict[str, list[str] | str]) -> str:
    """One line per scheme: its cells, or (a string) why it did not run."""
    lines = ["| scheme | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, cells in rows.items():
        if isinstance(cells, str):
            lines.append(f"| {name} | not run: {cells} |" + " |" * (len(columns) - 1))
        else:
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(rows: dict[str, dict]) -> str:
    columns = [
        "bits/weight",
        "theoretical MB",
        "measured MB",
        "mean diff",
        "max diff",
        "mean diff gaussian",
        "mean diff heavy_tailed",
        "load s",
        "fwd b=1",
        "fwd b=1024",
        "fwd peak MB",
    ]

    def cell(column: str, value: float) -> str:
        if column.startswith("fwd b="):
            return f"{value:.2f}x"
        if "diff" in column:
            return f"{value:.4f}" if column.startswith("mean") else f"{value:.3f}"
        return f"{value:.2f}"

    return markdown_table(
        columns, {name: row["error"] if "error" in row else [cell(c, row[c]) for c in columns] for name, row in rows.items()}
    )


def plot(rows: dict[str, dict], path: Path) -> None:
    """Mean output error against bits per weight for the quantized schemes (float32 and float16 are far off to the right)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5))
    quantized = {name: row for name, row in rows.items() if "error" not in row and row["bits/weight"] < 8}
    for (name, row), marker in zip(quantized.items(), "osD^v<>pP*Xh"):
        axes.scatter(
            row["bits/weight"],
            row["mean diff"],
            marker=marker,
            s=60,
            label=f"{name}: {row['bits/weight']:.2f} bits, {row['mean diff']:.4f}",
        )
    axes.set(
        xlabel="bits per weight, all-in",
        ylabel="mean |output - float32 output|, default checkpoint",
        title="BigNet: output error against memory",
    )
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def lora_against_peft(path: Path, steps: int = 5) -> str:
    """The homework's LoRA and peft's on the same half-precision base: outputs with the same adapters, then a few training steps."""
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)  # the adapters' random A
    ours = homework_model("lora")(path)
    with torch.no_grad():  # non-zero B, so the adapters change the output
        for name, parameter in ours.named_parameters():
            if name.endswith("lora_b.weight"):
                parameter.normal_(std=0.01)
    base = homework_model("half_precision")(path)
    linear_names = [name for name, module in base.named_modules() if isinstance(module, torch.nn.Linear)]
    theirs = inject_adapter_in_model(LoraConfig(r=32, lora_alpha=32, lora_dropout=0.0, target_modules=linear_names), base)
    adapters = {name: parameter for name, parameter in ours.named_parameters() if ".lora_" in name}
    with torch.no_grad():
        for name, parameter in theirs.named_parameters():
            if ".lora_" in name:  # peft's <layer>.lora_A.default.weight is our <layer>.lora_a.weight
                ours_name = name.replace("lora_A.default", "lora_a").replace("lora_B.default", "lora_b")
                parameter.data = adapters[ours_name].detach().clone()  # float32, as ours
    for module in theirs.modules():  # our LoRA trains the LayerNorms too; so does theirs here
        if isinstance(module, LayerNorm):
            module.requires_grad_(True)

    x = random_inputs(1024, seed=0)
    with torch.no_grad():
        output_diff = (ours(x) - theirs(x)).abs().max().item()
    losses = {}
    for label, model in (("homework", ours), ("peft", theirs)):
        data = noise_classification(1000, seed=0)
        losses[label] = []
        fit.fit(
            model,
            make_optimizer(DEFAULT_OPTIMIZER, model),
            *data,
            steps=steps,
            log=lambda line, into=losses[label]: into.append(float(line.split("loss")[1].split()[0])),
        )
    lines = [
        f"LoRA, same adapters, same float16 base: max |homework - peft| output difference {output_diff:.2e}",
        f"{steps} AdamW steps from the same start, loss:",
    ]
    lines += [f"  step {i + 1}: homework {a:.4f}  peft {b:.4f}" for i, (a, b) in enumerate(zip(losses["homework"], losses["peft"]))]
    return "\n".join(lines)


def main(repeats: int = 3, out: str = "benchmarks/results"):
    torch.manual_seed(0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = family_checkpoints()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; forward times: median of {repeats} ratios to float32, timed alternately",
        flush=True,
    )
    rows = compare_all(paths, repeats)
    markdown = table(rows)
    print("\n" + markdown + "\n")
    (out / "libraries.md").write_text(markdown + "\n")
    try:
        plot(rows, out / "error_vs_bits.png")
        print(f"plot: {out / 'error_vs_bits.png'}")
    except ImportError as e:
        print(f"no plot: {e}")
    try:
        print(lora_against_peft(paths["default"]))
    except ImportError as e:
        print(f"LoRA against peft: not run: {e}")


if __name__ == "__main__":
    fire.Fire(main)
