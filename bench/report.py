"""`invoke report`: the latest bench results as a Markdown table and a PNG chart of the
image size per variant and layer (matplotlib), written into one folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.performance import RESULTS, markdown
from torchenv import PROJECT_ROOT, display_path
from torchenv.commands.performance import GB, load_results
from torchenv.model.records import BenchResults

# Stacked from the bottom, in the order the layers are made.
LAYER_COLOURS = {
    "Debian base (mmdebstrap)": "#4e79a7",
    "base adapted (user, checks)": "#a0cbe8",
    "venv: NVIDIA libraries": "#76b041",
    "venv: torch and the rest": "#f28e2b",
}


def load(results: Path = RESULTS) -> BenchResults:
    return load_results(results)


def layer_table(results: BenchResults) -> str:
    lines = ["| variant | layer | uncompressed | gzip (as pushed) | zstd 19 |", "| --- | --- | --- | --- | --- |"]
    for name, figures in results.variants.items():
        for layer in figures.sizes["layers"]:
            zstd = f"{layer['zstd'] / 1e6:.0f} MB" if layer.get("zstd") else "-"
            lines.append(f"| {name} | {layer['step']} | {layer['uncompressed'] / 1e6:.0f} MB | {layer['gzip'] / 1e6:.0f} MB | {zstd} |")
    return "\n".join(lines)


def chart(results: BenchResults, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display here, nor in CI
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4.5))
    labels, position = [], 0.0
    seen: set[str] = set()
    for name, figures in results.variants.items():
        size = figures.sizes
        bars = [
            # Layers under 1 MB (the app, metadata) would only crowd the legend.
            (f"{name}\ntorchenv", [(layer["step"], layer["uncompressed"]) for layer in size["layers"] if layer["uncompressed"] >= 1e6]),
            (f"{name}\nnaive", [("naive image (one stage)", size["naive_image"])]),
            (f"{name}\npushed gzip", [("pushed with gzip (--compression gzip)", size["gzip"])]),
            (f"{name}\nnaive gzip", [("naive, compressed as pushed", size["naive_gzip"])]),
        ]
        if size.get("zstd"):
            bars.append((f"{name}\npushed zstd", [("pushed with zstd 19 (the default)", size["zstd"])]))
        for label, parts in bars:
            bottom = 0.0
            for part, value in parts:
                colour = LAYER_COLOURS.get(part, "#bab0ac" if "naive" in part else "#76b7b2" if "gzip" in part else "#b07aa1")
                axis.bar(position, value / GB, bottom=bottom, color=colour, label=None if part in seen else part, width=0.8)
                seen.add(part)
                bottom += value / GB
            labels.append((position, label))
            position += 1
        position += 0.6
    axis.set_xticks([p for p, _ in labels], [label for _, label in labels], fontsize=7)
    axis.set_ylabel("GB")
    axis.set_title(f"Image size per variant and layer (measured {results.measured})")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(target, dpi=120)
    plt.close(figure)


def write(folder: Path, results_file: Path = RESULTS) -> list[Path]:
    results = load(results_file)
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "report.md"
    png = folder / "sizes.png"
    table.write_text(
        f"# torchenv performance (measured {results.measured})\n\n"
        "Made by `./invokew bench` (bench/performance.py) and `./invokew report`; each figure is "
        "measured side by side with its baseline in the same run.\n\n"
        f"{markdown(results)}\n\n## Size per layer\n\n{layer_table(results)}\n\n![Image size per variant and layer](sizes.png)\n"
    )
    chart(results, png)
    return [table, png]


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the latest bench results as report.md and sizes.png.")
    parser.add_argument("--folder", default="docs/performance", help="where report.md and sizes.png go")
    args = parser.parse_args()
    try:
        written = write(PROJECT_ROOT / args.folder)
    except FileNotFoundError as error:
        print(f"torchenv: error: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"torchenv: wrote {', '.join(display_path(path) for path in written)}")


if __name__ == "__main__":
    main()
