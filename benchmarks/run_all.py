"""Runs every benchmark row, prints one table, writes BENCHMARKS.md-ready markdown.

    python benchmarks/run_all.py --size paper --update BENCHMARKS.md

`--size paper|cpu|tiny` and `--device cpu|gpu` go to every script; `--repeats` overrides
the size's default. The markdown (machine, command, table, per-row details) is printed,
written to `--output` (default `benchmarks/results-<size>-<device>.md`) and, with
`--update FILE`, put between the `<!-- run_all:begin -->` and `<!-- run_all:end -->`
markers of FILE. A script that fails is reported as an ERROR row (with its traceback on
stderr) and the exit status is 1. Each script runs in its own Python process (its models
and TensorFlow's caches are freed when it ends), except at `--size tiny`, where they
share this one to save the imports (`--isolate yes|no` overrides).
"""

import datetime
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

# In the order of the table.
SCRIPTS = (
    "bench_two_stream_flops",
    "bench_original_scheme",
    "bench_head_training",
    "bench_all_lengths",
    "bench_lstm_step",
    "bench_streaming_predict",
    "bench_feature_store",
    "bench_memory",
    "bench_growth",
)
BEGIN, END = "<!-- run_all:begin -->", "<!-- run_all:end -->"


def _extra(parser):
    parser.add_argument(
        "--only", nargs="*", default=None, help="script names (bench_...) to run"
    )
    parser.add_argument("--output", default=None, help="markdown file to write")
    parser.add_argument(
        "--update", default=None, help="replace the run_all block of this file"
    )
    parser.add_argument(
        "--isolate",
        choices=("auto", "yes", "no"),
        default="auto",
        help="run each script in its own process (auto: yes except at --size tiny)",
    )


def markdown(rows, info, args, seconds, command):
    lines = [
        f"Measured {datetime.date.today().isoformat()} with `{command}` "
        f"({seconds / 60:.1f} min).",
        "",
        f"Machine: {info['cpu']} ({info['cpu_flags']}), {info['cores']} cores, "
        f"{info['memory_gib']} GiB; GPUs: {', '.join(info['gpus']) or 'none'}; "
        f"Python {info['python']}, TensorFlow {info['tensorflow']}, Keras "
        f"{info['keras']}. Load average (1, 5, 15 min) at the start: "
        f"{info['load_start']}, at the end: {info['load']}. Device: {args.device}; "
        f"size: {args.size}; repeats: {args.repeats}.",
        "",
        C.markdown_table(rows),
        "",
        "Details (absolute numbers behind each ratio):",
        "",
        C.markdown_details(rows),
    ]
    return "\n".join(lines) + "\n"


def update_block(path, text):
    """Replaces the text between the markers in `path` (appends them if missing)."""
    block = f"{BEGIN}\n{text}{END}"
    if os.path.exists(path):
        with open(path) as f:
            content = f.read()
    else:
        content = ""
    if BEGIN in content and END in content:
        head, rest = content.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        content = head + block + tail
    else:
        content = content + ("\n" if content else "") + block + "\n"
    with open(path, "w") as f:
        f.write(content)


def _run_isolated(name, args):
    """Runs `benchmarks/<name>.py` in a new process (its output goes to ours)."""
    with tempfile.TemporaryDirectory() as workdir:
        result = os.path.join(workdir, "rows.json")
        command = [
            sys.executable,
            os.path.join(C.HERE, f"{name}.py"),
            "--size",
            args.size,
            "--device",
            args.device,
            "--repeats",
            str(args.repeats),
            "--json",
            result,
        ]
        sys.stdout.flush()
        done = subprocess.run(command)
        if done.returncode != 0 or not os.path.exists(result):
            raise RuntimeError(f"{name} exited with status {done.returncode}")
        with open(result) as f:
            return [C.Row(**row) for row in json.load(f)]


def main(argv=None):
    args = C.parse_args(__doc__.splitlines()[0], argv, extra=_extra)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = "python benchmarks/run_all.py " + " ".join(argv)
    info = C.machine_info()
    info["load_start"] = info["load"]
    names = SCRIPTS if not args.only else [n for n in SCRIPTS if n in args.only]
    rows, failed = [], []
    started = time.time()
    isolate = args.isolate == "yes" or (args.isolate == "auto" and args.size != "tiny")
    for name in names:
        print(f"== {name} (--size {args.size}, load {C.load():.2f})", flush=True)
        begun = time.time()
        try:
            if isolate:
                script_rows = _run_isolated(name, args)
            else:
                script_rows = importlib.import_module(name).run(args)
                C.print_rows(script_rows)
        except Exception:  # report, go on with the other rows
            traceback.print_exc()
            failed.append(name)
            script_rows = [
                C.Row(
                    key=name,
                    what=name,
                    against="-",
                    target="-",
                    values=[],
                    met=False,
                    detail="ERROR: see the traceback on stderr",
                    size=args.size,
                    load=C.load(),
                )
            ]
            C.print_rows(script_rows)
        print(f"   ({time.time() - begun:.1f} s)", flush=True)
        rows.extend(script_rows)
    seconds = time.time() - started
    info["load"] = [round(x, 2) for x in os.getloadavg()]
    text = markdown(rows, info, args, seconds, command)
    print("\n" + text)
    output = args.output or os.path.join(
        C.HERE, f"results-{args.size}-{args.device}.md"
    )
    with open(output, "w") as f:
        f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"machine": info, "rows": [r.to_dict() for r in rows]}, f, indent=1
            )
    if args.update:
        update_block(args.update, text)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
