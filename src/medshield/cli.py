"""The ``medshield`` command line (typer).

Every command only calls library functions (experiments return results objects; reports are
made from the saved results), so anything the CLI does can be done from Python too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from medshield import __version__

app = typer.Typer(
    name="medshield",
    help="Privacy-preserving and robust ML for medical IoT data: run, evaluate, reproduce.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console()
err_console = Console(stderr=True)

DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Data directory (default: $MEDSHIELD_DATA; embedded data when unset)."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every random choice.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")]


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _options(out: Path, mode: str, data: Path | None, device: str, seed: int, progress: bool,
             threads: int | None = None) -> Any:
    from medshield.experiments import RunOptions
    from medshield.runtime import data_dir, get_device, num_threads

    try:
        dev = get_device(device)
    except ValueError as err:
        _fail(str(err))
    num_threads(threads)
    return RunOptions(out=out, mode=mode, data_root=data_dir(data), device=dev, seed=seed,
                      progress=progress and sys.stderr.isatty(), threads=threads)


def _print_tables(tables: dict[str, list[dict[str, Any]]], limit: int = 40) -> None:
    from medshield.results import _fmt  # one formatting rule for files and terminal

    for name, rows in tables.items():
        if not rows:
            continue
        cols: list[str] = []
        for row in rows:
            cols.extend(k for k in row if k not in cols)
        table = Table(title=name, title_justify="left", show_lines=False)
        for c in cols:
            table.add_column(c, overflow="fold")
        for row in rows[:limit]:
            table.add_row(*[_fmt(row.get(c)) for c in cols])
        if len(rows) > limit:
            table.caption = f"{len(rows) - limit} more rows in the CSV/Markdown files"
        console.print(table)


@app.command()
def version() -> None:
    """Print medshield's version."""
    console.print(f"medshield {__version__}")


@app.command()
def datasets(data: DataOpt = None) -> None:
    """List the datasets: which are available, from where, and how to get the missing ones."""
    from medshield.data import available_datasets
    from medshield.runtime import DATA_ENV, data_dir

    root = data_dir(data)
    console.print(f"data directory: {root if root else f'(none: set ${DATA_ENV} or pass --data)'}")
    table = Table("dataset", "status", "from / how to get it")
    style = {"full": "green", "embedded": "yellow", "missing": "red"}
    for a in available_datasets(root):
        where = a.where if a.status != "missing" else a.hint
        table.add_row(a.name, f"[{style[a.status]}]{a.status}[/]", where)
    console.print(table)


@app.command()
def train(
    config: Annotated[Path | None, typer.Option("--config", help="YAML file (see configs/).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name (medshield datasets).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    source: Annotated[str | None, typer.Option(help="auto | full | embedded")] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/train"),
    resume: Annotated[bool, typer.Option(help="Resume from OUT/checkpoint.pt.")] = False,
    data: DataOpt = None,
    device: DeviceOpt = "auto",
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    progress: ProgressOpt = True,
) -> None:
    """Train one registered model on one dataset; write a checkpoint, results and a report."""
    from medshield.config import ConfigError, TrainConfig, load_config
    from medshield.data import DataError, load_dataset
    from medshield.models import MODELS
    from medshield.registry import RegistryError
    from medshield.report import build_report
    from medshield.results import ResultsFile, machine_info, write_results
    from medshield.runtime import seed_everything
    from medshield.training import evaluate, fit

    try:
        cfg = load_config(config, TrainConfig, {
            "dataset": dataset, "model": model, "epochs": epochs, "batch_size": batch_size,
            "lr": lr, "source": source, "seed": seed})
    except ConfigError as err:
        _fail(str(err))
    opts = _options(out, "quick", data, device, cfg.seed, progress)
    seed_everything(cfg.seed)
    try:
        ds = load_dataset(cfg.dataset, root=opts.data_root, seed=cfg.seed, source=cfg.source)
        model_options = dict(cfg.model_options)
        model_options.setdefault("num_classes", ds.info.num_classes)
        net = MODELS.create(cfg.model, **model_options)
    except (DataError, RegistryError, TypeError) as err:
        _fail(str(err))
    console.print(f"training {cfg.model} on {ds.summary()}")
    out.mkdir(parents=True, exist_ok=True)
    history = fit(net, ds.train.loader(batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed),
                  epochs=cfg.epochs, lr=cfg.lr, optimizer=cfg.optimizer, device=opts.device,
                  val_loader=ds.val.loader(batch_size=256), checkpoint_dir=out, resume=resume,
                  seed=cfg.seed, progress=opts.progress)
    report = evaluate(net, ds.test.loader(batch_size=256), device=opts.device)
    res = ResultsFile(system="train", data={cfg.dataset: ds.info.source},
                      meta={"config": cfg.model_dump(), "machine": machine_info(),
                            "history": history.to_dict(), "test": report})
    res.tables["test_metrics"] = [{"model": cfg.model, "dataset": cfg.dataset,
                                   **{k: v for k, v in report.items() if isinstance(v, float | int)}}]
    write_results(res, out)
    build_report(out, res)
    _print_tables(res.tables)
    console.print(f"checkpoint, results.json and report.html in {out}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("medshield-demo"),
    fast: Annotated[bool, typer.Option(help="Seconds instead of minutes (used by the tests).")] = False,
    section: Annotated[list[str] | None, typer.Option(help="Run only these sections.")] = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    progress: ProgressOpt = True,
) -> None:
    """Train, attack and defend on embedded data; write OUT/report.html and OUT/results.json."""
    from medshield.experiments import run_demo

    opts = _options(out, "fast" if fast else "quick", None, device, seed, progress)
    res = run_demo(opts, sections=section, console=console)
    _print_tables(res.tables)
    console.print(f"[bold green]report:[/] {out / 'report.html'}   [bold]results:[/] {out / 'results.json'}")


@app.command()
def reproduce(
    system: Annotated[str, typer.Argument(help="robustness | pgsl | obfnet | eicpp | pehealth")],
    quick: Annotated[bool, typer.Option("--quick/--full", help="A subset in minutes on CPU, or the paper's full grid.")] = True,
    out: Annotated[Path | None, typer.Option(help="Output directory (default runs/SYSTEM).")] = None,
    data: DataOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    progress: ProgressOpt = True,
) -> None:
    """Reproduce a paper: its tables and figures with the paper's numbers beside ours."""
    from medshield.experiments import EXPERIMENTS, PLANNED
    from medshield.report import build_report
    from medshield.results import machine_info, write_results

    if system not in EXPERIMENTS:
        if system in PLANNED:
            _fail(f"`reproduce {system}` is not implemented yet; it is tracked in {PLANNED[system]}.")
        _fail(f"unknown system {system!r}; available: {', '.join(EXPERIMENTS.names()) or 'none yet'}")
    out = out or Path("runs") / system
    opts = _options(out, "quick" if quick else "full", data, device, seed, progress)
    res = EXPERIMENTS.get(system)(opts)
    res.meta.setdefault("machine", machine_info())
    write_results(res, out)
    build_report(out, res)
    _print_tables(res.tables)
    for note in res.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"results in {out}")


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="attacks | split | obfnet | fl | secure")],
    out: Annotated[Path | None, typer.Option(help="Output directory (default runs/bench-NAME).")] = None,
    quick: Annotated[bool, typer.Option("--quick/--full", help="Fewer repetitions and sizes.")] = False,
    threads: Annotated[int, typer.Option(help="torch threads for ours and the peer.")] = 1,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Measure a cost against a peer in the same run; write OUT/bench.json."""
    from medshield.experiments import BENCHES, PLANNED
    from medshield.results import write_bench

    if name not in BENCHES:
        if name in PLANNED:
            _fail(f"`bench {name}` is not implemented yet; it is tracked in {PLANNED[name]}.")
        _fail(f"unknown benchmark {name!r}; available: {', '.join(BENCHES.names()) or 'none yet'}")
    out = out or Path("runs") / f"bench-{name}"
    opts = _options(out, "quick" if quick else "full", None, device, seed, False, threads)
    result = BENCHES.get(name)(opts)
    path = write_bench(result, out)
    _print_tables({name: [r.model_dump(exclude_none=True) for r in result.rows]})
    console.print(f"bench rows in {path}")


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="A directory holding results.json.")],
) -> None:
    """Rebuild report.html (and figures) from a saved results.json."""
    from medshield.report import build_report

    try:
        path = build_report(results_dir)
    except FileNotFoundError as err:
        _fail(str(err))
    console.print(f"report: {path}")


@app.command("show")
def show(
    results_dir: Annotated[Path, typer.Argument(help="A directory holding results.json or bench.json.")],
) -> None:
    """Print the tables of a saved results.json or bench.json."""
    for fname in ("results.json", "bench.json"):
        p = results_dir / fname
        if p.exists():
            doc = json.loads(p.read_text())
            if "tables" in doc:
                _print_tables(doc["tables"])
            else:
                _print_tables({doc["bench"]: doc["rows"]})
            return
    _fail(f"{results_dir}: neither results.json nor bench.json found")


@app.command()
def serve(
    model: Annotated[Path, typer.Option("--model", help="state_dict (or checkpoint) of the model to serve.")],
    model_name: Annotated[str, typer.Option(help="Registered model name of the weights.")] = "lenet5",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: a free one, printed on start).")] = 8000,
    ssl_certfile: Annotated[Path | None, typer.Option(help="Serve HTTPS with this certificate.")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="Private key of --ssl-certfile.")] = None,
    max_batch: Annotated[int, typer.Option(help="Largest batch one request may carry.")] = 256,
    threads: Annotated[int | None, typer.Option(help="torch threads.")] = None,
) -> None:
    """Serve the ObfNet coordinator's model over HTTP(S); clients need $MEDSHIELD_API_KEY."""
    from medshield.runtime import num_threads
    from medshield.serve.server import serve as run_server

    if not model.is_file():
        _fail(f"{model}: no such file; train one with `medshield reproduce obfnet` or "
              "`medshield train` and pass its weights with --model")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        _fail("pass both --ssl-certfile and --ssl-keyfile, or neither")
    num_threads(threads)
    try:
        run_server(host, port, model, None, model_name=model_name,
                   ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                   ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None, max_batch=max_batch,
                   ready=lambda url: console.print(f"listening on {url}"))
    except ValueError as err:
        _fail(str(err))


def _add_subcommands() -> None:
    """Attach the party command groups (``medshield secure ...``, ``medshield split ...``)."""
    from medshield.secure.cli import secure_app
    from medshield.split.cli import split_app

    app.add_typer(secure_app, name="secure")
    app.add_typer(split_app, name="split")


_add_subcommands()


if __name__ == "__main__":  # pragma: no cover
    app()
