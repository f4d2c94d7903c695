"""Command line: ``python -m training {cache,split,train,evaluate,export,all,graft,population,refit-ood} <model>``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from . import MODEL_IDS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    ap.add_argument("command", choices=["cache", "split", "train", "evaluate", "export", "all", "graft",
                                        "population", "refit-ood"])
    ap.add_argument("model", choices=MODEL_IDS)
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--resume", action="store_true", help="continue from the run's last.pt (runs/<model>[/member<N>]/)")
    ap.add_argument("--init", default=None,
                    help="start training from the weights of this checkpoint (fine-tune)")
    ap.add_argument("--size", type=int, default=None,
                    help="train at this input size instead of the recipe's (progressive resizing)")
    ap.add_argument("--lr", type=float, default=None, help="override the recipe's peak learning rate")
    ap.add_argument("--member", type=int, default=0,
                    help="ensemble member to train (seed 0 + member; runs/<model>/member<N>/)")
    args = ap.parse_args(argv)

    from .recipes import get

    recipe = get(args.model)
    if args.member and not 0 < args.member < recipe.members:
        raise SystemExit(f"{recipe.model_id} has members 0..{recipe.members - 1}")
    overrides: dict[str, object] = {}
    if args.size:
        overrides["spec"] = replace(recipe.spec, height=args.size, width=args.size)
    if args.lr:
        overrides["lr"] = args.lr
    train_recipe = replace(recipe, **overrides)  # type: ignore[arg-type]
    if args.command == "cache":
        from .data import build_cache
        print(build_cache(recipe.dataset, recipe.cache_size))
    elif args.command == "split":
        from .splits import make_split, summary
        make_split(recipe.dataset)
        print(summary(recipe.dataset))
    if args.command in ("train", "all"):
        from .loop import train
        train(train_recipe, epochs=args.epochs, resume=args.resume,
              init=Path(args.init) if args.init else None, member=args.member)
    if args.command in ("evaluate", "all"):
        from .evaluate import evaluate
        print(json.dumps(evaluate(recipe), indent=1)[:4000])
    if args.command == "graft":  # applicability output onto the committed ONNX (graft.py)
        from .graft import graft
        print(graft(recipe))
    if args.command == "population":  # the learnt population term onto the committed ONNX
        from .population import graft as graft_population
        print(graft_population(recipe, version=recipe.version))
    if args.command == "refit-ood":  # the gate's OOD rule on the committed ONNX (gate.py)
        from .gate import refit_ood
        print(refit_ood(recipe))
    if args.command in ("export", "all"):
        from .export import export
        print(export(recipe))
    return 0


if __name__ == "__main__":
    sys.exit(main())
