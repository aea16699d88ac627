"""`xinference register / unregister / cached / remove-cache`: custom models and the
workers' download cache."""

from pathlib import Path

import click
from tabulate import tabulate

from .commands import _size
from .endpoint import client_command, cluster, endpoint_option


@client_command()
@endpoint_option
@click.option("-t", "--model-type", default="LLM", show_default=True)
@click.option("-f", "--file", "spec_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The model's JSON description.")
@click.option("--persist/--no-persist", default=False, show_default=True,
              help="Keep it across restarts of the supervisor.")
@click.option("--worker-ip", default=None, help="Launch it only on this worker (its weights are there).")
def register(endpoint, model_type, spec_file, persist, worker_ip) -> None:
    """Register a custom model (local weights via model_uri, or a hub repo via model_id)."""
    text = Path(spec_file).read_text(encoding="utf-8")
    with cluster(endpoint) as client:
        client.register_model(model_type, text, persist=persist, worker_ip=worker_ip)
    click.echo(f"Registered {model_type} model from {spec_file}" + (" (persisted)." if persist else "."))


@client_command()
@endpoint_option
@click.option("-t", "--model-type", default="LLM", show_default=True)
@click.option("-n", "--model-name", required=True)
def unregister(endpoint, model_type, model_name) -> None:
    """Remove a custom model's registration (its cached weights stay)."""
    with cluster(endpoint) as client:
        client.unregister_model(model_type, model_name)
    click.echo(f"Unregistered {model_name}.")


@client_command()
@endpoint_option
@click.option("-n", "--model-name", default=None, help="Only this model's versions.")
@click.option("--worker-ip", default=None, help="Only this worker's cache.")
def cached(endpoint, model_name, worker_ip) -> None:
    """Show the model versions the workers have downloaded."""
    with cluster(endpoint) as client:
        rows = client.list_cached_models(model_name, worker_ip)
    if not rows:
        click.echo("Nothing cached yet: launching a model by name downloads it.")
        return
    table = [(r["model_version"], r.get("model_type") or "", r.get("model_format") or "",
              _size(r["model_size_in_billions"]) if r.get("model_size_in_billions") else "",
              r.get("quantization") or "", f"{r['size_bytes'] / 1e6:,.1f}", r.get("hub") or "",
              r.get("worker_ip") or "", r["path"]) for r in rows]
    click.echo(tabulate(table, headers=["Model version", "Type", "Format", "Size (B)", "Quantization",
                                        "MB", "Hub", "Worker", "Path"]))


@client_command("remove-cache")
@endpoint_option
@click.option("--model-version", "-v", required=True, help="As `xinference cached` lists it.")
@click.option("--worker-ip", default=None, help="Only on this worker [default: every worker].")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def remove_cache(endpoint, model_version, worker_ip, yes) -> None:
    """Delete a cached model version (refused while a replica uses it)."""
    with cluster(endpoint) as client:
        paths = client.list_deletable_models(model_version, worker_ip)["paths"]
        click.echo("This deletes:\n  " + "\n  ".join(paths[:20])
                   + (f"\n  ... and {len(paths) - 20} more" if len(paths) > 20 else ""))
        if not yes and not click.confirm("Delete them?", default=False):
            click.echo("Nothing deleted.")
            return
        client.confirm_and_remove_model(model_version, worker_ip)
    click.echo(f"Removed {model_version}.")
