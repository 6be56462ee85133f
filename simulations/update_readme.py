"""Copy each experiment's table from results/NAME/summary.md into README.md (between its markers).

Run from the repository root after rerunning an experiment:

    .venv/bin/python simulations/update_readme.py

tests/test_experiment_results.py checks that the README tables are the ones the CSV files give.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    readme = HERE / "README.md"
    text = readme.read_text()
    for summary in sorted(HERE.glob("results/*/summary.md")):
        name = summary.parent.name
        begin, end = f"<!-- begin table {name} -->\n", f"<!-- end table {name} -->"
        if begin not in text or end not in text:
            continue
        table = summary.read_text().split("\n| ", 1)[1]
        head, rest = text.split(begin, 1)
        text = head + begin + "\n| " + table + "\n" + end + rest.split(end, 1)[1]
    readme.write_text(text)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
