"""
The command line for BigNet's checkpoints:

    python -m homework.checkpoint create                      # checkpoints/bignet.pth
    python -m homework.checkpoint create other.pth --seed 3 --family heavy_tailed
    python -m homework.checkpoint fingerprint checkpoints/bignet.pth
"""

from .. import checkpoint
from ..bignet import default_checkpoint, make_checkpoint
from ..cli import check_choice, check_int, run

COMMANDS = ("create", "fingerprint")


def main(command: str = "create", path: str | None = None, seed: int = 0, family: str = "default", force: bool = False):
    seed, command = check_int("seed", seed, minimum=0), check_choice("command", command, COMMANDS)
    if command == "create":
        made = make_checkpoint(path or checkpoint.DEFAULT_PATH, seed, family, force=force)
        print(f"Wrote {made} (seed {seed}, family {family}, fingerprint {checkpoint.fingerprint(checkpoint.read(made))})")
    else:  # the default checkpoint is made on first use, as by every command that needs it
        print(checkpoint.fingerprint(checkpoint.read(path or default_checkpoint())))


if __name__ == "__main__":
    run(main)
