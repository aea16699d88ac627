"""The protocol the REST layer types the supervisor with matches the actor: mypy
cannot see it (xoscar's actor base class is untyped), this test does."""

import inspect

from xinference.core.supervisor import SupervisorActor
from xinference.core.supervisor_api import SupervisorAPI


def _methods(cls):
    return {n: f for n, f in vars(cls).items() if inspect.iscoroutinefunction(f)}


def test_every_call_the_rest_layer_types_exists_on_the_actor_with_the_same_parameters():
    api = _methods(SupervisorAPI)
    assert len(api) > 20
    for name, declared in api.items():
        actual = getattr(SupervisorActor, name, None)
        assert actual is not None and inspect.iscoroutinefunction(actual), name
        want = [(p.name, p.default is inspect.Parameter.empty) for p in inspect.signature(declared).parameters.values()]
        have = [(p.name, p.default is inspect.Parameter.empty) for p in inspect.signature(actual).parameters.values()]
        assert have == want, name
