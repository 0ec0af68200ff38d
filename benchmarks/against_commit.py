"""Scoring and generation speed of this checkout against an earlier commit's, side by side in one run.

    python benchmarks/against_commit.py --ref b217f68 [--out against-b217f68] [--repeats 1] [--threads 2]

Checks the commit out into a temporary git worktree and runs each benchmark's own script there and here, in the
order earlier, here, here, earlier (repeated ``--repeats`` times), so that a slow spell of a shared machine hits
both sides alike. Each script imports the package of its own checkout. Each side's best run counts; the table gives
here / earlier for scoring candidates/s (methods a, b and c of ``scoring_speed.py``) and generated tokens/s per
batch size (``generation_speed.py``). Each run's JSON is kept under ``--out``; run again with the same ``--out``,
an interrupted comparison goes on with the runs it lacks (use a new ``--out`` once this checkout has changed). This
is how issue 13's "the CPU path gets no slower" is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = {
    # (a) at one batch size and (b) on one candidate: they are references here, and each run stays near 3 minutes.
    "scoring": ["scoring_speed.py", "--full-batch-sizes", "21", "--padded-candidates", "1"],
    "generation": ["generation_speed.py", "--batch-sizes", "1", "16", "--prompts", "32", "--single-prompts", "4"],
}


def run(checkout: Path, benchmark: str, output: Path, threads: int) -> dict:
    script, *arguments = BENCHMARKS[benchmark]
    arguments = [*arguments, "--output", str(output)]
    if benchmark == "scoring":
        arguments += ["--threads", str(threads)]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    # Each script puts its own checkout first on sys.path, so an installed (editable) package does not leak in.
    subprocess.run([sys.executable, str(checkout / "benchmarks" / script), *arguments], check=True, env=environment)
    return json.loads(output.read_text())


def rates(benchmark: str, figures: dict) -> dict[str, float]:
    if benchmark == "scoring":
        return {f"scoring {name} cand/s": row["candidates_per_s"] for name, row in figures["methods"].items()}
    # Rows were keyed by batch size until 2026-11-28, then by cache and batch size: the dynamic cache's keep their name.
    return {
        f"generation batch {row.get('batch_size', key)}{'' if row.get('cache', 'dynamic') == 'dynamic' else ' static'}"
        " tokens/s": row["tokens_per_s"]
        for key, row in figures.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the earlier commit")
    parser.add_argument("--out", help="folder for each run's JSON and the table (default: against-<ref>)")
    parser.add_argument("--repeats", type=int, default=1, help="earlier, here, here, earlier: this many times")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), choices=list(BENCHMARKS))
    args = parser.parse_args()
    out = Path(args.out or f"against-{args.ref}")
    out.mkdir(parents=True, exist_ok=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as temporary:
        # The benchmarks read ../shared/data beside their checkout.
        (Path(temporary) / "shared").symlink_to(ROOT.parent / "shared")
        earlier = Path(temporary) / "earlier"
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)  # what a killed run left registered
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(earlier), args.ref], cwd=ROOT, check=True)
        try:
            for benchmark in args.benchmarks:
                done = {"earlier": 0, "here": 0}
                for side in ("earlier", "here", "here", "earlier") * args.repeats:
                    output = out / f"{benchmark}-{side}-{done[side]}.json"
                    done[side] += 1
                    if not output.exists():  # kept from an interrupted run of the same --out
                        run(earlier if side == "earlier" else ROOT, benchmark, output, args.threads)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(earlier)], cwd=ROOT, check=False)
    best: dict[str, dict[str, float]] = {"earlier": {}, "here": {}}
    for benchmark in args.benchmarks:
        for side in best:
            for output in sorted(out.glob(f"{benchmark}-{side}-*.json")):
                for name, rate in rates(benchmark, json.loads(output.read_text())).items():
                    best[side][name] = max(rate, best[side].get(name, 0.0))
    lines = [
        f"here ({head.strip()}) against {args.ref}, {args.threads} threads, best of {2 * args.repeats} runs a side",
        f"{'figure':<34} {'earlier':>10} {'here':>10} {'here/earlier':>13}",
    ]
    for name, earlier_rate in best["earlier"].items():
        here_rate = best["here"].get(name, float("nan"))
        lines.append(f"{name:<34} {earlier_rate:>10.2f} {here_rate:>10.2f} {here_rate / earlier_rate:>12.2f}x")
    table = "\n".join(lines)
    print(table)
    (out / "table.txt").write_text(table + "\n")
    (out / "best.json").write_text(json.dumps(best, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
