"""Reads GET /metrics of an in-process app into {(sample name, labels): value}."""

from typing import Dict, Optional, Tuple

from prometheus_client.parser import text_string_to_metric_families

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


async def scrape(http) -> Samples:
    r = await http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> Optional[float]:
    """The sample with exactly these labels; None if there is none."""
    return samples.get((name, tuple(sorted(labels.items()))))
