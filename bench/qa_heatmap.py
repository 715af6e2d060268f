#!/usr/bin/env python3
"""qa_real sweeps as an SVG heatmap (tooling only: Python 3 stdlib, plus the zstd command for .json.zst).

Each --run LABEL=PATH names one `ilre eval` qa_real result (qa_real.json or qa_real.json.zst, or the folder
holding it); runs given the same LABEL share its rows. Rows are LABEL x context (documents alone, all@N),
columns are the recall budgets; a cell is the mean over the chosen split of the chosen metric, coloured from
0 (white) to 1 (dark blue), with the value printed in it. The passage-alone accuracy of each run, when it has
one, is printed after its rows.

  bench/qa_heatmap.py --metric accuracy --split all --out acc.svg \\
      --run defaults=runs/ans-base --run relevance=runs/ans-relevance
"""
import argparse
import html
import json
import os
import subprocess
import sys


def load(path):
    if not os.path.exists(path):
        sys.exit(f"qa_heatmap: {path} does not exist")
    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            for name in ("qa_real.json", "qa_real.json.zst"):
                if name in files:
                    return load(os.path.join(root, name))
        sys.exit(f"qa_heatmap: no qa_real.json(.zst) under {path}")
    if path.endswith(".zst"):
        return json.loads(subprocess.run(["zstd", "-dcq", path], check=True, capture_output=True).stdout)
    with open(path) as f:
        return json.load(f)


def context_label(name):
    # Contexts are named after their document ("perlfunc") or "all@<tokens>" for the long ones.
    return name if "@" in name else "documents alone"


def in_split(question, split):
    return split == "all" or (split == "heldout") == bool(question["heldout"])


def cells(run, metric, split):
    """{(context label, budget): [values]} for the ilre method."""
    out = {}
    for ctx in run["contexts"]:
        label = context_label(ctx["name"])
        for q in ctx["questions"]:
            if not in_split(q, split):
                continue
            for m in q["methods"]:
                if m["method"] != "ilre" or m.get("skipped"):
                    continue
                if metric == "accuracy" and not m.get("answered"):
                    continue
                value = m["cover"] if metric == "recall" else (1.0 if m["correct"] else 0.0)
                out.setdefault((label, m["budget"]), []).append(value)
    return out


def passage_accuracy(run, split):
    heldout = {q["id"]: q["heldout"] for ctx in run["contexts"] for q in ctx["questions"]}
    ps = [p for p in run.get("passages", []) if split == "all" or (split == "heldout") == heldout.get(p["id"], False)]
    return sum(p["correct"] for p in ps) / len(ps) if ps else None


def colour(v):
    # White to dark blue, linear in each channel.
    lo, hi = (255, 255, 255), (8, 48, 107)
    return "#%02x%02x%02x" % tuple(round(a + (b - a) * v) for a, b in zip(lo, hi))


def svg(rows, budgets, notes, title):
    cw, ch, left, top = 72, 28, 260, 50
    # Wide enough for the title and the notes at ~7 px a character.
    width = max(left + cw * len(budgets) + 20, 20 + 7 * max([len(title)] + [len(n) for n in notes]))
    height = top + ch * len(rows) + 40 + 16 * len(notes)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="14">{html.escape(title)}</text>']
    for j, b in enumerate(budgets):
        out.append(f'<text x="{left + j * cw + cw / 2}" y="{top - 8}" text-anchor="middle">{b}</text>')
    for i, (label, values) in enumerate(rows):
        y = top + i * ch
        out.append(f'<text x="{left - 8}" y="{y + ch / 2 + 4}" text-anchor="end">{html.escape(label)}</text>')
        for j, b in enumerate(budgets):
            v = values.get(b)
            x = left + j * cw
            if v is None:
                out.append(f'<rect x="{x}" y="{y}" width="{cw}" height="{ch}" fill="#eeeeee" stroke="#ffffff"/>')
                continue
            out.append(f'<rect x="{x}" y="{y}" width="{cw}" height="{ch}" fill="{colour(v)}" stroke="#ffffff"/>')
            ink = "#ffffff" if v > 0.55 else "#000000"
            out.append(f'<text x="{x + cw / 2}" y="{y + ch / 2 + 4}" text-anchor="middle" fill="{ink}">{v:.2f}</text>')
    y = top + ch * len(rows) + 20
    out.append(f'<text x="{left + cw * len(budgets) / 2}" y="{y}" text-anchor="middle">recall budget (tokens)</text>')
    for k, note in enumerate(notes):
        out.append(f'<text x="10" y="{y + 18 + 16 * k}">{html.escape(note)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="LABEL=PATH (repeatable)")
    ap.add_argument("--metric", choices=["accuracy", "recall"], default="accuracy")
    ap.add_argument("--split", choices=["all", "tune", "heldout"], default="all")
    ap.add_argument("--title", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    # Runs sharing a LABEL fill one row set (e.g. budgets 512-1K from one run, 2K-8K from others).
    rows, budgets, notes = {}, set(), {}
    for spec in args.run:
        label, _, path = spec.partition("=")
        if not path:
            sys.exit(f"qa_heatmap: --run wants LABEL=PATH, got {spec}")
        run = load(path)
        by_context = {}
        for (ctx, budget), values in cells(run, args.metric, args.split).items():
            by_context.setdefault(ctx, {})[budget] = sum(values) / len(values)
            budgets.add(budget)
        for ctx in sorted(by_context, key=lambda c: (c != "documents alone", c)):
            rows.setdefault(f"{label}, {ctx}", {}).update(by_context[ctx])
        p = passage_accuracy(run, args.split)
        if args.metric == "accuracy" and p is not None:
            notes.setdefault(label, f"{label}: passage alone {p:.2f}")
    rows, notes = list(rows.items()), list(notes.values())
    title = args.title or f"qa_real {args.metric}, {args.split} questions"
    with open(args.out, "w") as f:
        f.write(svg(rows, sorted(budgets), notes, title))
    print(f"qa_heatmap: {len(rows)} rows x {len(budgets)} budgets -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
