"""The conveyorctl commands: build a request, call one service, print the result.

Each command is `fn(ctx, args) -> exit code`. Human output goes through `render.Table`
and `render.details`; `-o json|yaml` prints the API message (or response) as-is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from conveyor.v1 import (
    event_service_pb2,
    pipeline_pb2,
    pipeline_service_pb2,
    run_pb2,
    run_service_pb2,
    target_service_pb2,
)
from conveyor_ctl import render, spec
from conveyor_ctl.client import CallError, Clients
from conveyor_ctl.failure import EXIT_OK, EXIT_RUN_FAILED, Failure

Target = pipeline_pb2.Target
Run = run_pb2.Run

TERMINAL_STATES = frozenset({Run.SUCCEEDED, Run.FAILED, Run.SUPERSEDED, Run.CANCELLED})

# How many times an update based on our own read is retried when someone else changed the pipeline.
UPDATE_ATTEMPTS = 3


@dataclass
class Context:
    clients: Clients
    out: render.Output
    stdin: Any = None
    # For commands that connect by themselves (`dead-letters`: NATS): the environment and --timeout.
    environ: Mapping[str, str] = dataclasses.field(default_factory=dict)
    timeout: float = 30.0

    def read_stdin(self) -> str:
        return (self.stdin or sys.stdin).read()

    def stdin_is_terminal(self) -> bool:
        isatty = getattr(self.stdin or sys.stdin, "isatty", None)
        return bool(isatty and isatty())

    def confirm(self, question: str) -> bool:
        """Ask on stderr, read the answer from stdin; only y/yes agrees."""
        print(f"{question} [y/N] ", end="", file=self.out.stderr, flush=True)
        answer = (self.stdin or sys.stdin).readline()
        return answer.strip().lower() in {"y", "yes"}


# ---------------------------------------------------------------- shared helpers


def collect(
    fetch: Callable[[int, str], Message], items_field: str, limit: int, page_token: str
) -> tuple[list[Any], str]:
    """Page through a List RPC until `limit` items (0 = all) or the end; returns (items, next token)."""
    items: list[Any] = []
    token = page_token
    while True:
        remaining = 1000 if limit == 0 else min(1000, limit - len(items))
        response = fetch(remaining, token)
        items.extend(getattr(response, items_field))
        token = response.next_page_token
        if not token or (limit and len(items) >= limit):
            return items, token


def print_list(
    ctx: Context,
    response: Message,
    table: render.Table,
    *,
    empty: str,
    names: list[str],
    next_token: str = "",
) -> None:
    out = ctx.out
    if out.machine:
        out.data(render.message_dict(response))
    elif out.format == "name":
        for name in names:
            out.print(name)
    else:
        out.table(table, empty=empty)
    if next_token and not out.machine:
        out.hint(f"(more results: add --page-token {next_token}, or --limit 0 for all)")


def print_one(ctx: Context, message: Message, name: str, human: str | Callable[[], str]) -> None:
    """The message for scripts, its name for `-o name`, else the human view (built only when needed)."""
    out = ctx.out
    if out.machine:
        out.data(render.message_dict(message))
    elif out.format == "name":
        out.print(name)
    else:
        out.print(human if isinstance(human, str) else human())


def when_detail(out: render.Output, timestamp: Any) -> str:
    moment = render.to_datetime(timestamp)
    if moment is None:
        return "-"
    return f"{render.local_time(moment)} ({render.relative_time(moment, out.now)})"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def list_clusters(ctx: Context) -> list[target_service_pb2.Cluster]:
    return list(ctx.clients.targets.call("ListClusters", target_service_pb2.ListClustersRequest()).clusters)


def default_cluster(ctx: Context, args: argparse.Namespace) -> str:
    """--cluster, or the only configured cluster."""
    if args.cluster:
        return str(args.cluster)
    clusters = list_clusters(ctx)
    if len(clusters) == 1:
        return str(clusters[0].name)
    names = ", ".join(c.name for c in clusters) or "none configured"
    raise spec.UsageError(f"--cluster is required when the deployer has several clusters ({names})")


# ---------------------------------------------------------------- pipelines


def pipeline_target(target: pipeline_pb2.Target) -> str:
    kind = spec.enum_label(Target.WorkloadKind, target.workload_kind).lower()
    return f"{target.cluster}/{target.namespace}/{kind}/{target.workload}"


def pipeline_details(out: render.Output, p: pipeline_pb2.Pipeline) -> str:
    options = p.options
    timeout = render.short_duration(options.rollout_timeout.ToTimedelta().total_seconds())
    pairs = [
        ("Name", p.name),
        ("Display name", p.display_name),
        ("Description", p.description or "-"),
        ("State", "DISABLED" if p.disabled else "ENABLED"),
        ("", ""),
        ("Registry", p.source.registry),
        ("Repository", p.source.repository),
        ("Tag filter", spec.describe_tag_filter(p.source.tag_filter)),
        ("Origin", spec.enum_label(pipeline_pb2.ImageOrigin, p.source.origin)),
        ("", ""),
        ("Platform", spec.enum_label(Target.Platform, p.target.platform)),
        ("Region", p.target.region or "-"),
        ("Cluster", p.target.cluster),
        ("Namespace", p.target.namespace),
        ("Workload", f"{spec.enum_label(Target.WorkloadKind, p.target.workload_kind).lower()}/{p.target.workload}"),
        ("Container", p.target.container),
        ("", ""),
        ("Pin digest", yes_no(options.pin_digest)),
        ("Verify rollout", yes_no(options.verify_rollout if options.HasField("verify_rollout") else True)),
        ("Rollout timeout", timeout if options.HasField("rollout_timeout") else "default (10m)"),
        ("Rollback on failure", yes_no(options.rollback_on_failure)),
        ("", ""),
        ("Created", when_detail(out, p.create_time)),
        ("Updated", when_detail(out, p.update_time)),
        ("Etag", p.etag or "-"),
    ]
    return render.details(pairs, colour=out.colour)


def pipelines_list(ctx: Context, args: argparse.Namespace) -> int:
    clauses = [args.filter] if args.filter else []
    for field, value in (
        ("source.registry", args.registry),
        ("source.repository", args.repository),
        ("target.cluster", args.cluster),
        ("target.namespace", args.namespace),
        ("target.workload", args.workload),
    ):
        if value:
            clauses.append(f"{field} = {json.dumps(value)}")
    query = " AND ".join(clauses)

    def fetch(size: int, token: str) -> Message:
        request = pipeline_service_pb2.ListPipelinesRequest(page_size=size, page_token=token, filter=query)
        return ctx.clients.pipelines.call("ListPipelines", request)

    items, token = collect(fetch, "pipelines", args.limit, args.page_token)
    table = render.Table(["NAME", "SOURCE", "TAGS", "TARGET", "CONTAINER", "STATE", "UPDATED"])
    for p in items:
        table.add(
            spec.pipeline_id(p.name),
            f"{p.source.registry}/{p.source.repository}",
            spec.describe_tag_filter(p.source.tag_filter),
            pipeline_target(p.target),
            p.target.container,
            "DISABLED" if p.disabled else "ENABLED",
            ctx.out.when(p.update_time if p.HasField("update_time") else p.create_time),
        )
    response = pipeline_service_pb2.ListPipelinesResponse(pipelines=items, next_page_token=token)
    print_list(ctx, response, table, empty="No pipelines.", names=[p.name for p in items], next_token=token)
    return EXIT_OK


def pipelines_get(ctx: Context, args: argparse.Namespace) -> int:
    name = spec.pipeline_name(args.name)
    pipeline = ctx.clients.pipelines.call("GetPipeline", pipeline_service_pb2.GetPipelineRequest(name=name))
    print_one(ctx, pipeline, pipeline.name, lambda: pipeline_details(ctx.out, pipeline))
    return EXIT_OK


def _pipeline_input(ctx: Context, args: argparse.Namespace) -> tuple[pipeline_pb2.Pipeline, list[str], str]:
    """The pipeline from -f FILE (if any) overlaid with flags; its field paths; the file's etag."""
    pipeline = pipeline_pb2.Pipeline()
    file_paths: list[str] = []
    file_etag = ""
    if args.file:
        stdin_text = ctx.read_stdin() if args.file == "-" else None
        pipeline, file_paths = spec.load_pipeline_file(args.file, stdin_text)
        file_etag = pipeline.etag
        spec.clear_output_only(pipeline)
    flags, flag_paths = spec.pipeline_from_flags(args)
    spec.copy_paths(flags, pipeline, flag_paths)  # flags win over the file for the fields they name
    return pipeline, spec.merge_paths(file_paths, flag_paths), file_etag


def apply_cluster_target(
    ctx: Context, pipeline: pipeline_pb2.Pipeline, paths: list[str], *, cluster: str, cluster_changes: bool
) -> list[str]:
    """Default the platform and region to what the deployer declares for `cluster`; refuse ones that differ.

    Defaults apply when the pipeline gets this cluster (create, or an update that changes it); given
    values are always checked. A cluster the deployer does not declare is left to config, which
    reports it; a deployer that cannot be asked leaves the values unchecked, with a warning.
    Returns the paths, plus those of the defaulted fields.
    """
    try:
        declared = next((c for c in list_clusters(ctx) if c.name == cluster), None)
    except CallError as exc:
        ctx.out.hint(f"warning: platform and region not checked against the deployer: {Failure.from_call(exc).message}")
        return paths
    if declared is None:
        return paths
    paths = list(paths)
    target = pipeline.target
    for field in ("platform", "region"):
        want, given = getattr(declared, field), getattr(target, field)
        if not want:
            continue  # the deployer declares nothing to default to or check against (unspecified is 0)
        if spec.touches(paths, f"target.{field}") and given:
            if given != want:
                shown = spec.enum_label(Target.Platform, given) if field == "platform" else given
                declared_as = spec.enum_label(Target.Platform, want) if field == "platform" else want
                raise spec.UsageError(
                    f"{field} {shown} does not match cluster {cluster!r}, which the deployer declares "
                    f"{declared_as} (leave --{field} out to use it)"
                )
        elif cluster_changes:
            setattr(target, field, want)
            if not spec.touches(paths, f"target.{field}"):
                paths.append(f"target.{field}")
    return paths


def pipelines_create(ctx: Context, args: argparse.Namespace) -> int:
    pipeline, paths, _etag = _pipeline_input(ctx, args)
    if pipeline.target.cluster:
        apply_cluster_target(ctx, pipeline, paths, cluster=pipeline.target.cluster, cluster_changes=True)
    from_file = spec.pipeline_id(pipeline.name) if pipeline.name else ""
    given = spec.pipeline_id(spec.pipeline_name(args.name)) if args.name else ""
    if given and from_file and given != from_file:
        raise spec.UsageError(f"the file names pipeline {from_file!r} but the command line says {given!r}")
    pipeline_id = given or from_file
    if from_file:
        spec.pipeline_name(pipeline.name)  # validates the shape
    pipeline.ClearField("name")
    pipeline.ClearField("etag")
    if not pipeline.display_name and pipeline_id:
        pipeline.display_name = pipeline_id
    request = pipeline_service_pb2.CreatePipelineRequest(
        pipeline=pipeline,
        pipeline_id=pipeline_id,
        request_id=args.request_id or str(uuid.uuid4()),
        validate_only=args.validate_only,
    )
    created = ctx.clients.pipelines.call("CreatePipeline", request)
    verb = "valid" if args.validate_only else "created"
    print_one(ctx, created, created.name, lambda: f"{created.name or 'pipeline'} {verb}")
    if not args.validate_only and not ctx.out.machine and ctx.out.format != "name":
        ctx.out.hint(f"(start it by hand: conveyorctl pipelines start {spec.pipeline_id(created.name)} --tag TAG)")
    return EXIT_OK


def pipelines_update(ctx: Context, args: argparse.Namespace) -> int:
    name = spec.pipeline_name(args.name)
    changes, paths, file_etag = _pipeline_input(ctx, args)
    if changes.name and spec.pipeline_name(changes.name) != name:
        raise spec.UsageError(f"the file names {changes.name!r} but the command line says {name!r}")
    if not paths:
        raise spec.UsageError("nothing to update: give at least one field flag (see --help) or -f FILE")
    if spec.touches(paths, "target.cluster"):
        paths = apply_cluster_target(ctx, changes, paths, cluster=changes.target.cluster, cluster_changes=True)
    elif spec.touches(paths, "target.platform") or spec.touches(paths, "target.region"):
        current = ctx.clients.pipelines.call("GetPipeline", pipeline_service_pb2.GetPipelineRequest(name=name))
        paths = apply_cluster_target(ctx, changes, paths, cluster=current.target.cluster, cluster_changes=False)
    changes.name = name
    etag = args.etag or file_etag
    # With an etag we were given, a conflict is the caller's to resolve; with one we read
    # ourselves, the masked fields are re-applied on top of the newer version.
    attempts = 1 if etag else UPDATE_ATTEMPTS
    for attempt in range(1, attempts + 1):
        if not args.etag and not file_etag:
            current = ctx.clients.pipelines.call("GetPipeline", pipeline_service_pb2.GetPipelineRequest(name=name))
            etag = current.etag
        changes.etag = etag
        request = pipeline_service_pb2.UpdatePipelineRequest(
            pipeline=changes, update_mask=spec.field_mask(paths), validate_only=args.validate_only
        )
        try:
            updated = ctx.clients.pipelines.call("UpdatePipeline", request)
        except CallError as exc:
            if exc.code == grpc.StatusCode.ABORTED and attempt < attempts:
                continue
            raise
        fields = ", ".join(paths) if len(paths) <= 4 else f"{len(paths)} fields"
        summary = f"{updated.name} {'valid' if args.validate_only else 'updated'} ({fields})"
        print_one(ctx, updated, updated.name, summary)
        return EXIT_OK
    raise AssertionError("unreachable")


def count_runs(ctx: Context, pipeline: str) -> int:
    def fetch(size: int, token: str) -> Message:
        request = run_service_pb2.ListRunsRequest(parent=pipeline, page_size=size, page_token=token)
        return ctx.clients.runs.call("ListRuns", request)

    runs, _ = collect(fetch, "runs", 0, "")
    return len(runs)


def pipelines_delete(ctx: Context, args: argparse.Namespace) -> int:
    """Deleting a pipeline deletes its run history too, so it is confirmed (on a terminal) or needs --yes."""
    name = spec.pipeline_name(args.name)
    ctx.clients.pipelines.call("GetPipeline", pipeline_service_pb2.GetPipelineRequest(name=name))  # NOT_FOUND first
    runs = count_runs(ctx, name)
    what = f"{name} and its {plural(runs, 'run')} (their history and logs)" if runs else name
    if not args.yes:
        if not ctx.stdin_is_terminal():
            raise spec.UsageError(f"not deleting {what} without confirmation: stdin is not a terminal; add --yes")
        if not ctx.confirm(f"Delete {what}?"):
            raise spec.UsageError(f"{name} not deleted")
    ctx.clients.pipelines.call("DeletePipeline", pipeline_service_pb2.DeletePipelineRequest(name=name, etag=args.etag))
    if ctx.out.machine:
        ctx.out.data({"name": name, "deleted": True, "deletedRuns": runs})
    elif ctx.out.format == "name":
        ctx.out.print(name)
    else:
        ctx.out.print(f"{name} deleted" + (f" with its {plural(runs, 'run')}" if runs else ""))
    return EXIT_OK


def pipelines_start(ctx: Context, args: argparse.Namespace) -> int:
    name = spec.pipeline_name(args.name)
    request = pipeline_service_pb2.StartPipelineRequest(
        name=name,
        tag=args.tag,
        digest=args.digest or "",
        request_id=args.request_id or str(uuid.uuid4()),
        allow_unverified=args.allow_unverified,
    )
    run = ctx.clients.pipelines.call("StartPipeline", request)
    print_one(ctx, run, run.name, lambda: f"{run.name} {Run.State.Name(run.state)} ({run.image or args.tag})")
    if not args.follow:
        if not ctx.out.machine and ctx.out.format != "name":
            ctx.out.hint(f"(follow it: conveyorctl runs logs -f {run.name})")
        return EXIT_OK
    return follow_logs(ctx, run.name)


def pipelines_tags(ctx: Context, args: argparse.Namespace) -> int:
    name = spec.pipeline_name(args.name)

    def fetch(size: int, token: str) -> Message:
        request = event_service_pb2.ListTagsRequest(
            pipeline=name, page_size=size, page_token=token, include_digests=args.digests
        )
        return ctx.clients.events.call("ListTags", request)

    tags, token = collect(fetch, "tags", args.limit, args.page_token)
    table = render.Table(["TAG", "DIGEST"] if args.digests else ["TAG"])
    for tag in tags:
        table.add(*([tag.tag, tag.digest or "-"] if args.digests else [tag.tag]))
    response = event_service_pb2.ListTagsResponse(tags=tags, next_page_token=token)
    print_list(ctx, response, table, empty="No tags.", names=[t.tag for t in tags], next_token=token)
    return EXIT_OK


# ---------------------------------------------------------------- runs


def run_duration(out: render.Output, run: run_pb2.Run) -> str:
    start = render.to_datetime(run.start_time) or render.to_datetime(run.create_time)
    if start is None:
        return "-"
    end = render.to_datetime(run.end_time)
    if end is None:
        if run.state in TERMINAL_STATES:
            return "-"
        end = out.now
    return render.short_duration(max(0.0, (end - start).total_seconds()))


def run_details(out: render.Output, run: run_pb2.Run) -> str:
    pairs = [
        ("Name", run.name),
        ("State", Run.State.Name(run.state)),
        ("Trigger", spec.enum_label(Run.Trigger, run.trigger)),
        ("Image", run.image or "-"),
        ("Tag", run.tag or "-"),
        ("Digest", run.digest or "-"),
        ("Previous image", run.previous_image or "-"),
        ("Created", when_detail(out, run.create_time)),
        ("Started", when_detail(out, run.start_time)),
        ("Ended", when_detail(out, run.end_time)),
        ("Duration", run_duration(out, run)),
        ("Event", run.event_id or "-"),
    ]
    if run.error:
        pairs.insert(2, ("Error", run.error))
    return render.details(pairs, colour=out.colour)


def runs_list(ctx: Context, args: argparse.Namespace) -> int:
    parent = spec.run_parent(args.pipeline)
    query = args.filter or " OR ".join(f"state = {Run.State.Name(s)}" for s in args.state or [])

    def fetch(size: int, token: str) -> Message:
        request = run_service_pb2.ListRunsRequest(parent=parent, page_size=size, page_token=token, filter=query)
        return ctx.clients.runs.call("ListRuns", request)

    runs, token = collect(fetch, "runs", args.limit, args.page_token)
    table = render.Table(["NAME", "STATE", "TRIGGER", "TAG", "CREATED", "DURATION"])
    for run in runs:
        table.add(
            run.name,
            Run.State.Name(run.state),
            spec.enum_label(Run.Trigger, run.trigger),
            run.tag or "-",
            ctx.out.when(run.create_time),
            run_duration(ctx.out, run),
        )
    response = run_service_pb2.ListRunsResponse(runs=runs, next_page_token=token)
    print_list(ctx, response, table, empty="No runs.", names=[r.name for r in runs], next_token=token)
    return EXIT_OK


def runs_get(ctx: Context, args: argparse.Namespace) -> int:
    name = spec.run_name(args.name)
    run = ctx.clients.runs.call("GetRun", run_service_pb2.GetRunRequest(name=name))
    print_one(ctx, run, run.name, lambda: run_details(ctx.out, run))
    return EXIT_OK


def runs_delete(ctx: Context, args: argparse.Namespace) -> int:
    name = spec.run_name(args.name)
    ctx.clients.runs.call("DeleteRun", run_service_pb2.DeleteRunRequest(name=name))
    if ctx.out.machine:
        ctx.out.data({"name": name, "deleted": True})
    elif ctx.out.format == "name":
        ctx.out.print(name)
    else:
        ctx.out.print(f"{name} deleted")
    return EXIT_OK


LEVEL_WIDTH = 7
STEP_WIDTH = 16


def log_line(out: render.Output, entry: run_pb2.RunLogEntry) -> str:
    level = spec.enum_label(run_pb2.RunLogEntry.Level, entry.level)
    moment = render.local_time(render.to_datetime(entry.time))
    painted = render.paint(level.ljust(LEVEL_WIDTH), render.STATE_COLOURS.get(level), out.colour)
    return f"{moment}  {painted}  {(entry.step or '-').ljust(STEP_WIDTH)}  {entry.message}".rstrip()


def print_log_entries(ctx: Context, entries: Iterator[run_pb2.RunLogEntry]) -> None:
    out = ctx.out
    for index, entry in enumerate(entries):
        if out.format == "json":
            # One JSON object per line, so a follower can process entries as they arrive.
            out.print(json.dumps(render.message_dict(entry), ensure_ascii=False))
        elif out.format == "yaml":
            out.print(("" if index == 0 else "---\n") + render.dump(render.message_dict(entry), "yaml"))
        else:
            out.print(log_line(out, entry))


def follow_logs(ctx: Context, name: str) -> int:
    """Stream the run's log until it ends; report its final state (human output only); 0 only if it SUCCEEDED."""
    request = run_service_pb2.TailRunLogsRequest(name=name, follow=True)
    print_log_entries(ctx, ctx.clients.runs.stream("TailRunLogs", request, deadline=False))
    run: Run = ctx.clients.runs.call("GetRun", run_service_pb2.GetRunRequest(name=name))
    if not ctx.out.machine:
        state = Run.State.Name(run.state)
        painted = render.paint(state, render.STATE_COLOURS.get(state), render.colour_enabled(ctx.out.stderr))
        ctx.out.hint(f"{run.name} {painted}" + (f": {run.error}" if run.error else ""))
    return EXIT_OK if run.state == Run.SUCCEEDED else EXIT_RUN_FAILED


def runs_logs(ctx: Context, args: argparse.Namespace) -> int:
    name = spec.run_name(args.name)
    if args.follow:
        return follow_logs(ctx, name)
    request = run_service_pb2.TailRunLogsRequest(name=name, follow=False)
    print_log_entries(ctx, ctx.clients.runs.stream("TailRunLogs", request))
    return EXIT_OK


# ---------------------------------------------------------------- events


def short_digest(digest: str) -> str:
    algorithm, _, hexa = digest.partition(":")
    return f"{algorithm}:{hexa[:12]}" if hexa else (digest or "-")


def events_list(ctx: Context, args: argparse.Namespace) -> int:
    def fetch(size: int, token: str) -> Message:
        request = event_service_pb2.ListEventsRequest(
            page_size=size,
            page_token=token,
            registry=args.registry or "",
            repository=args.repository or "",
            tag=args.tag or "",
            decision=args.decision or event_service_pb2.MatchDecision.OUTCOME_UNSPECIFIED,
        )
        return ctx.clients.events.call("ListEvents", request)

    events, token = collect(fetch, "events", args.limit, args.page_token)
    table = render.Table(["RECEIVED", "IMAGE", "DIGEST", "PIPELINE", "OUTCOME", "DETAIL"])
    for event in events:
        push = event.push
        image = f"{push.registry}/{push.repository}:{push.tag}"
        first = [ctx.out.when(event.receive_time), image, short_digest(push.digest)]
        decisions = list(event.decisions) or [event_service_pb2.MatchDecision()]
        for index, decision in enumerate(decisions):
            outcome = spec.enum_label(event_service_pb2.MatchDecision.Outcome, decision.outcome)
            detail = decision.reason or decision.run or ""
            if decision.reason and decision.run:
                detail = f"{decision.reason} ({decision.run})"
            lead = first if index == 0 else ["", "", ""]
            table.add(*lead, spec.pipeline_id(decision.pipeline) or "-", outcome, detail or "-")
    response = event_service_pb2.ListEventsResponse(events=events, next_page_token=token)
    names = [e.push.event_id for e in events]
    print_list(ctx, response, table, empty="No registry events.", names=names, next_token=token)
    return EXIT_OK


# ---------------------------------------------------------------- targets


def targets_clusters(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.clients.targets.call("ListClusters", target_service_pb2.ListClustersRequest())
    table = render.Table(["NAME", "PLATFORM", "REGION", "SANDBOX"])
    for cluster in response.clusters:
        table.add(
            cluster.name,
            spec.enum_label(Target.Platform, cluster.platform),
            cluster.region or "-",
            "SANDBOX" if cluster.sandbox else "-",
        )
    names = [c.name for c in response.clusters]
    print_list(ctx, response, table, empty="No clusters configured on the deployer.", names=names)
    return EXIT_OK


def targets_namespaces(ctx: Context, args: argparse.Namespace) -> int:
    cluster = default_cluster(ctx, args)
    request = target_service_pb2.ListNamespacesRequest(cluster=cluster)
    response = ctx.clients.targets.call("ListNamespaces", request)
    table = render.Table(["NAMESPACE"])
    for namespace in response.namespaces:
        table.add(namespace)
    print_list(ctx, response, table, empty=f"No namespaces in {cluster}.", names=list(response.namespaces))
    return EXIT_OK


def targets_workloads(ctx: Context, args: argparse.Namespace) -> int:
    cluster = default_cluster(ctx, args)
    request = target_service_pb2.ListWorkloadsRequest(
        cluster=cluster, namespace=args.namespace, kind=args.kind or Target.WORKLOAD_KIND_UNSPECIFIED
    )
    response = ctx.clients.targets.call("ListWorkloads", request)
    table = render.Table(["KIND", "NAME", "CONTAINERS", "INIT CONTAINERS"])
    for workload in response.workloads:
        table.add(
            spec.enum_label(Target.WorkloadKind, workload.kind).lower(),
            workload.name,
            ", ".join(c.name for c in workload.containers) or "-",
            ", ".join(c.name for c in workload.init_containers) or "-",
        )
    names = [f"{spec.enum_label(Target.WorkloadKind, w.kind).lower()}/{w.name}" for w in response.workloads]
    print_list(ctx, response, table, empty=f"No workloads in {cluster}/{args.namespace}.", names=names)
    return EXIT_OK


def targets_containers(ctx: Context, args: argparse.Namespace) -> int:
    cluster = default_cluster(ctx, args)
    kind = args.kind
    if not kind:
        # Find the kind by name; ambiguous names need --kind.
        listed = ctx.clients.targets.call(
            "ListWorkloads", target_service_pb2.ListWorkloadsRequest(cluster=cluster, namespace=args.namespace)
        ).workloads
        kinds = sorted({w.kind for w in listed if w.name == args.workload})
        if len(kinds) != 1:
            where = f"{cluster}/{args.namespace}"
            if not kinds:
                raise spec.UsageError(f"no workload named {args.workload!r} in {where} (see `targets workloads`)")
            raise spec.UsageError(f"several workloads named {args.workload!r} in {where}: give --kind")
        kind = kinds[0]
    request = target_service_pb2.GetWorkloadRequest(
        cluster=cluster, namespace=args.namespace, kind=kind, name=args.workload
    )
    workload = ctx.clients.targets.call("GetWorkload", request)
    table = render.Table(["CONTAINER", "TYPE", "IMAGE"])
    for container in workload.containers:
        table.add(container.name, "container", container.image)
    for container in workload.init_containers:
        table.add(container.name, "init", container.image)
    names = [c.name for c in [*workload.containers, *workload.init_containers]]
    print_list(ctx, workload, table, empty="No containers.", names=names)
    return EXIT_OK
