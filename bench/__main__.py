"""`make bench` / `python -m bench`: the probe's accuracy, capacity and cost, against the emulator's truth.

Results go to bench/results/latest.json and latest.md (the performance page is made from it).
Everything runs on loopback; each run is bounded in count and time. Named scenarios run alone
(`python -m bench footprint restarts`) and write their results only where --out says.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench import output
from bench.scenarios import SCENARIOS
from bench.skeleton import FAULTS, Results

NAMES = [s.name for s in SCENARIOS]


def markdown(results: Results) -> str:
    lines = [f"Measured {results['when']} on {results['machine']} (`make bench`).", ""]
    for scenario in SCENARIOS:
        lines += scenario.report(results)
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"run only these: {', '.join(NAMES)}")
    for scenario in SCENARIOS:
        scenario.options(parser)
    parser.add_argument("--out", help="output path without extension (default bench/results/latest for a full run)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in NAMES]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(NAMES)}")
    if args.out is None and not args.scenarios:
        args.out = str(output.RESULTS / "latest")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    results: Results = output.stamp() | {"faults": FAULTS}
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp_dir:
        for scenario in SCENARIOS:
            if args.scenarios and scenario.name not in args.scenarios:
                continue
            tmp = Path(tmp_dir) / scenario.name
            tmp.mkdir()
            found = scenario.run(args, tmp)
            for key, value in found.items():
                print(json.dumps({key: value}), flush=True)
            results |= found
    if args.out is None:
        print(markdown(results))
    else:
        output.write(Path(args.out), results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
