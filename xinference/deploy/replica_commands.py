"""`xinference replicas / scale / events`: a running model's replicas, adding and
removing them, and what happened to them (crashes, relaunches)."""

import time
from typing import Any, Dict, Optional

import click
from tabulate import tabulate

from .endpoint import client_command, cluster, endpoint_option


@client_command()
@endpoint_option
@click.option("--model-uid", "-u", required=True)
def replicas(endpoint, model_uid) -> None:
    """Show a model's replicas: where each runs, its state and its load."""
    with cluster(endpoint) as client:
        desc = client.describe_model(model_uid)
        load = {r["replica_uid"]: r for r in client.get_model_replicas(model_uid)}
    rows = []
    for r in desc["replicas"]:
        live: Dict[str, Any] = load.get(r["replica_uid"], {})
        state = "unreachable" if live.get("down") else r.get("state", "ready" if r["ready"] else "starting")
        slots = (f"{live['slots_busy']}/{live['slots_total']}" if "slots_total" in live else "")
        reserved = r.get("memory_reserved") or 0
        rows.append((r["replica_uid"], r["worker_address"], state,
                     f"{reserved / (1 << 30):.2f} GiB" if reserved else "", live.get("inflight", ""),
                     live.get("served", ""), slots, live.get("queue_length", "")))
    click.echo(tabulate(rows, headers=["Replica", "Worker", "State", "Memory", "In flight", "Served",
                                       "Slots busy", "Queued"]))
    click.echo(f"\nRestarts: {desc.get('restarts', 0)}"
               + (f"; last error: {desc['last_error']}" if desc.get("last_error") else ""))


@client_command()
@endpoint_option
@click.option("--model-uid", "-u", required=True)
@click.option("--add", "add", type=click.IntRange(1), default=None, help="Start this many more replicas.")
@click.option("--remove", "remove", default=None, metavar="REPLICA_UID",
              help="Stop this replica (see `xinference replicas`).")
@click.option("--worker-ip", default=None, help="With --add: start them on this worker.")
@click.option("--drain-timeout", type=click.FloatRange(0, 3600), default=30.0, show_default=True,
              help="With --remove: seconds its running requests may take to finish.")
def scale(endpoint, model_uid, add: Optional[int], remove: Optional[str], worker_ip, drain_timeout) -> None:
    """Add replicas to a running model, or remove one, without a pause in serving."""
    if (add is None) == (remove is None):
        raise click.UsageError("Give either --add N or --remove REPLICA_UID.")
    if worker_ip and add is None:
        raise click.UsageError("--worker-ip goes with --add.")
    with cluster(endpoint) as client:
        if add is not None:
            out = client.add_model_replicas(model_uid, add, worker_ip)
            click.echo(f"Added {', '.join(out['added'])}; {model_uid} has {out['replica']} replicas.")
        else:
            out = client.remove_model_replica(model_uid, str(remove), drain_timeout)
            click.echo(f"Removed {out['removed']}; {model_uid} has {out['replica']} replicas.")


@client_command()
@endpoint_option
@click.option("--model-uid", "-u", required=True)
def events(endpoint, model_uid) -> None:
    """What happened to a model's replicas: crashes, lost workers, relaunches, scaling."""
    with cluster(endpoint) as client:
        items = client.get_model_events(model_uid)
    if not items:
        click.echo(f"Nothing happened to {model_uid}'s replicas since it was launched.")
        return
    rows = [(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"])), e["kind"],
             e["replica_uid"] or "", e["message"]) for e in items]
    click.echo(tabulate(rows, headers=["Time", "Event", "Replica", "Message"],
                        maxcolwidths=[None, None, None, 70]))
