"""The blue/green rollout, one implementation for every backend:

1. create the endpoint if it is missing;
2. create the new deployment with 0 % traffic;
3. smoke-test it alone (the `azureml-model-deployment` header routes to it whatever the traffic);
4. optionally mirror a share of live traffic to it, then shift traffic to it all at once or in steps,
   smoke-testing the endpoint after each step;
5. optionally delete the deployments that served before.

Any failure from step 2 on gives the traffic back as it was and deletes the new deployment, then raises
`RolloutFailed` saying what failed and what was restored. An interrupt (the agent's cancel, which kills the task
seconds later) sends the same two requests without waiting for Azure to apply them, says so, and re-raises.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from amlops.deploy.online_endpoint.model import AUTH_MODES, DeploymentSpec, EndpointBackend, check_name
from amlops.deploy.online_endpoint.router import DEPLOYMENT_HEADER
from amlops.errors import AmlopsError
from amlops.smoke import SmokeReport, SmokeTest

MAX_MIRROR_PERCENT = 50  # the spec: mirrorTraffic values "need to sum to utmost 50"


class RolloutFailed(AmlopsError):
    """The rollout stopped; the endpoint serves as before it started."""


@dataclass(frozen=True)
class RolloutPlan:
    request_file: Path
    traffic_steps: tuple[int, ...] = (100,)
    mirror_percent: int = 0
    delete_previous: bool = False
    auth_mode: str = "key"
    expected: list[float] | None = None
    tolerance: float = 0.01
    smoke_requests: int = 10
    readiness_timeout_s: float = 600


@dataclass(frozen=True)
class RolloutResult:
    endpoint: str
    scoring_uri: str
    deployment: str
    previous: str | None
    traffic: dict[str, int]
    deleted: tuple[str, ...]
    smoke: SmokeReport
    key: str | None = field(default=None, repr=False)  # a secret: the endpoint key or a token


def parse_traffic_steps(text: str | None, source: str = "--traffic-steps") -> tuple[int, ...]:
    """`10,50,100` -> (10, 50, 100); empty means all at once."""
    try:
        return tuple(int(part) for part in (text or "100").split(","))
    except ValueError:
        raise AmlopsError(f"{source} must be percentages separated by commas such as 10,50,100, got '{text}'") \
            from None


def check_plan(plan: RolloutPlan) -> None:
    steps = plan.traffic_steps
    if not steps or steps[-1] != 100 or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise AmlopsError(f"traffic steps {','.join(map(str, steps))} are not valid: give increasing percentages "
                          "between 1 and 100 that end with 100, e.g. 10,50,100")
    if not 0 <= plan.mirror_percent <= MAX_MIRROR_PERCENT:
        raise AmlopsError(f"mirror traffic {plan.mirror_percent}% is not valid: Azure ML mirrors 0 to "
                          f"{MAX_MIRROR_PERCENT}% of the traffic")
    if plan.auth_mode not in AUTH_MODES:
        raise AmlopsError(f"auth mode '{plan.auth_mode}' is not valid: use one of {', '.join(AUTH_MODES)}")


def split(original: dict[str, int], new: str, percent: int) -> dict[str, int]:
    """`percent` to `new`, the rest shared by the deployments that had traffic, in their proportions."""
    serving = {name: share for name, share in original.items() if share > 0 and name != new}
    if not serving:
        return {**{name: 0 for name in original}, new: 100}
    total = sum(serving.values())
    rest = 100 - percent
    shares = {name: rest * share // total for name, share in serving.items()}
    largest = max(serving, key=lambda name: serving[name])
    shares[largest] += rest - sum(shares.values())
    return {**{name: 0 for name in original}, **shares, new: percent}


def rollout(backend: EndpointBackend, endpoint_name: str, spec: DeploymentSpec, plan: RolloutPlan,
            on_info: Callable[[str], None] = print) -> RolloutResult:
    check_name("endpoint", endpoint_name)
    check_name("deployment", spec.name)
    check_plan(plan)
    endpoint = backend.get(endpoint_name)
    if endpoint is None:
        on_info(f"creating endpoint {endpoint_name} ({plan.auth_mode} auth)")
        endpoint = backend.create(endpoint_name, plan.auth_mode)
    if endpoint.deployment(spec.name) is not None:
        raise AmlopsError(f"endpoint {endpoint_name} already has a deployment named {spec.name}; give the new "
                          "deployment a new name (the build id, for example)")
    original, previous = dict(endpoint.traffic), endpoint.live
    key = backend.key(endpoint_name)
    created = False
    try:
        on_info(f"creating deployment {spec.name} ({spec.model.ref}, {spec.instance_count} x {spec.instance_type}) "
                "with 0% traffic")
        created = True
        backend.create_deployment(endpoint_name, spec)
        on_info(f"smoke-testing {spec.name} alone ({DEPLOYMENT_HEADER}: {spec.name})")
        _smoke(endpoint.scoring_uri, key, plan, f"deployment {spec.name} alone", {DEPLOYMENT_HEADER: spec.name})
        if plan.mirror_percent and original:
            _mirror(backend, endpoint_name, endpoint.scoring_uri, key, spec.name, original, plan, on_info)
        report = _shift(backend, endpoint_name, endpoint.scoring_uri, key, spec.name, original, plan, on_info)
    except BaseException as error:
        raise _rolled_back(backend, endpoint_name, spec.name, original, created, error, on_info) from None
    deleted = _delete_previous(backend, endpoint_name, original, spec.name, on_info) if plan.delete_previous else ()
    final = backend.get(endpoint_name)
    return RolloutResult(endpoint_name, endpoint.scoring_uri, spec.name, previous,
                         dict(final.traffic) if final else {spec.name: 100}, deleted, report, key)


def _smoke(scoring_uri: str, key: str | None, plan: RolloutPlan, what: str,
           headers: dict[str, str] | None = None) -> SmokeReport:
    report = SmokeTest(scoring_uri, plan.request_file, key=key, expected=plan.expected, tolerance=plan.tolerance,
                       count=plan.smoke_requests, readiness_timeout_s=plan.readiness_timeout_s,
                       headers=headers).run()
    if not report.passed:
        raise AmlopsError(f"smoke test of {what} failed: {report.message.removeprefix('smoke test failed: ')}")
    return report


def _mirror(backend: EndpointBackend, endpoint: str, scoring_uri: str, key: str | None, new: str,
            original: dict[str, int], plan: RolloutPlan, on_info: Callable[[str], None]) -> None:
    """Copy a share of live requests to the new deployment (their answers are dropped), check the endpoint
    still answers, then stop mirroring: a deployment cannot take live and mirrored traffic at once."""
    on_info(f"mirroring {plan.mirror_percent}% of the traffic to {new}")
    backend.set_traffic(endpoint, original, {new: plan.mirror_percent})
    _smoke(scoring_uri, key, plan, f"endpoint {endpoint} while mirroring to {new}")
    backend.set_traffic(endpoint, original, {})


def _shift(backend: EndpointBackend, endpoint: str, scoring_uri: str, key: str | None, new: str,
           original: dict[str, int], plan: RolloutPlan, on_info: Callable[[str], None]) -> SmokeReport:
    report = None
    steps = plan.traffic_steps if any(share > 0 for share in original.values()) else (100,)
    for percent in steps:
        traffic = split(original, new, percent)
        on_info(f"traffic: {_describe(traffic)}")
        backend.set_traffic(endpoint, traffic, {})
        report = _smoke(scoring_uri, key, plan, f"endpoint {endpoint} with {percent}% on {new}")
    assert report is not None
    return report


def _rolled_back(backend: EndpointBackend, endpoint: str, new: str, original: dict[str, int], created: bool,
                 error: BaseException, on_info: Callable[[str], None]) -> BaseException:
    if isinstance(error, KeyboardInterrupt):
        _request_rollback(backend, endpoint, new, original, created, on_info)
        return error
    reason = str(error) if isinstance(error, AmlopsError) else f"{type(error).__name__}: {error}"
    undone = []
    try:
        on_info(f"rolling back: traffic {_describe(original) or 'none'}")
        backend.set_traffic(endpoint, original, {})
        undone.append(f"traffic is back to {_describe(original)}" if original else "the endpoint has no traffic")
        if created:
            on_info(f"rolling back: deleting deployment {new}")
            backend.delete_deployment(endpoint, new)
            undone.append(f"deployment {new} was deleted")
    except Exception as rollback_error:  # say what state the endpoint is in; never hide the first failure
        return RolloutFailed(f"rollout of {new} to endpoint {endpoint} failed: {reason}; the rollback failed too "
                             f"({rollback_error}); check the endpoint with `amlops endpoints show {endpoint}`")
    return RolloutFailed(f"rollout of {new} to endpoint {endpoint} failed: {reason}; {' and '.join(undone)}")


def _request_rollback(backend: EndpointBackend, endpoint: str, new: str, original: dict[str, int], created: bool,
                      on_info: Callable[[str], None]) -> None:
    """The rollback of an interrupted rollout: both changes requested, neither awaited (on a managed endpoint each
    takes minutes, and the task is killed seconds after the interrupt), each outcome said in one line."""
    traffic = _describe(original) or "none"
    requests = [(f"traffic {traffic}", lambda: backend.request_traffic(endpoint, original))]
    if created:
        requests.append((f"the deletion of deployment {new}", lambda: backend.request_deployment_delete(endpoint, new)))
    for what, send in requests:
        try:
            send()
            on_info(f"interrupted: {what} requested for endpoint {endpoint} (not waiting for it)")
        except Exception as error:  # noqa: BLE001 - said, and the task is ending anyway
            on_info(f"interrupted: could not request {what} for endpoint {endpoint}: {error}")
    where = f" --backend {backend.kind}" if backend.kind != "local" else ""
    shares = " ".join(f"{name}={share}" for name, share in sorted(original.items()) if share)
    fixes = [f"`amlops endpoints traffic {endpoint} {shares}{where}`"] if shares else []
    fixes += [f"`amlops endpoints delete {endpoint} --deployment {new}{where}`"] if created else []
    on_info(f"check that endpoint {endpoint} has traffic {traffic}{f' and no deployment {new}' if created else ''} "
            f"once the requests are applied: `amlops endpoints show {endpoint}{where}`"
            + (f"; else run {' and '.join(fixes)}" if fixes else ""))


def _delete_previous(backend: EndpointBackend, endpoint: str, original: dict[str, int], new: str,
                     on_info: Callable[[str], None]) -> tuple[str, ...]:
    deleted = []
    for name, share in sorted(original.items()):
        if share > 0 and name != new:
            on_info(f"deleting the previous deployment {name}")
            backend.delete_deployment(endpoint, name)
            deleted.append(name)
    return tuple(deleted)


def _describe(traffic: dict[str, int]) -> str:
    return ", ".join(f"{name} {percent}%" for name, percent in sorted(traffic.items()))
