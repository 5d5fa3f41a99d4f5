"""torchenv's command surface. Each task is a thin shell over the torchenv package.

Run `invoke --list` (or ./invokew --list) to see them; settings come from TORCHENV_*
variables or the `torchenv:` section of invoke.yaml (see torchenv/model/settings.py).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Collection, Context, task

from torchenv import PROJECT_ROOT
from torchenv.commands import host_tools, listing, performance, progress, testrun
from torchenv.errors import TorchenvError
from torchenv.model import audit as audit_model
from torchenv.model.matrix import Matrix, Variant, load_matrix
from torchenv.model.platforms import host_platform
from torchenv.model.project import load_project
from torchenv.model.settings import Settings
from torchenv.model.trust import trust_from
from torchenv.pipeline import audit as audit_pipeline
from torchenv.pipeline import compose, kubernetes, publish, run
from torchenv.pipeline import slurm as slurm_pipeline
from torchenv.pipeline.build import build_variant, image_tag
from torchenv.pipeline.clean import clean as clean_torchenv
from torchenv.pipeline.image_trust import Untrusted
from torchenv.pipeline.lock import lock_targets, lock_variants
from torchenv.pipeline.project_build import build_project, project_tests
from torchenv.pipeline.repro import reproduce
from torchenv.pipeline.repro_against import reproduce_against


def one_line_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """TorchenvErrors end the command with their one line and exit code, no traceback
    (`invoke --debug TASK` or TORCHENV_DEBUG=1 shows one)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except TorchenvError as error:
            if debugging():
                raise
            print(f"torchenv: error: {error}", file=sys.stderr)
            sys.exit(error.exit_code)

    return wrapper


def debugging() -> bool:
    # Invoke's own --debug turns on DEBUG logging before any task runs.
    return os.environ.get("TORCHENV_DEBUG") == "1" or logging.getLogger().isEnabledFor(logging.DEBUG)


def settings_of(c: Context) -> Settings:
    return Settings.load(c.config.get("torchenv", {}))


def matrix_of(settings: Settings) -> Matrix:
    return load_matrix(settings.matrix)


def chosen(
    c: Context, variant: str | None, all_variants: bool = False, platform: str | None = None
) -> tuple[Settings, Matrix, list[Variant]]:
    settings = settings_of(c)
    matrix = matrix_of(settings)
    return settings, matrix, matrix.select(variant, all_variants, platform or None)


PLATFORM_HELP = "linux/amd64 or linux/arm64 (default: this host's, where the variant has it; others run emulated)"


@task(name="list")
@one_line_errors
def list_(c: Context, markdown: bool = False) -> None:
    """Print the variant matrix (validated) as a table."""
    matrix = matrix_of(settings_of(c))
    print(listing.markdown_table(matrix) if markdown else listing.text_table(matrix))


@task(help={"cuda": "only the CUDA variants (the GPU job's)"})
@one_line_errors
def matrix(c: Context, cuda: bool = False) -> None:
    """Print the variants as a GitHub Actions matrix (JSON `include` list)."""
    include = listing.ci_include(matrix_of(settings_of(c)))
    print(json.dumps({"include": [entry for entry in include if not cuda or entry["cuda"] != "none"]}))


@task(
    help={
        "variant": "variant to build (default: the matrix's default)",
        "all": "build every variant",
        "allow-unlocked": "build a variant without a lock from its pins (not reproducible; the image's labels say so)",
        "pull-first": "use the pushed image recorded in images/digests.json when its lock matches; build otherwise",
        "platform": PLATFORM_HELP,
        "project": "a project folder (pyproject.toml with [tool.torchenv]) to build on the variant: locked, checked, tagged torchenv-NAME",
    }
)
@one_line_errors
def build(
    c: Context,
    variant: str | None = None,
    all: bool = False,
    allow_unlocked: bool = False,
    pull_first: bool = False,
    platform: str = "",
    project: str = "",
) -> None:
    """Build, verify and tag a variant's image (with --project, a project's image on top of it)."""
    settings, matrix, variants = chosen(c, variant, all, platform)
    if allow_unlocked:
        settings = dataclasses.replace(settings, allow_unlocked=True)
    if project:
        if allow_unlocked or pull_first:
            raise TorchenvError("--project builds on the variant's lock: leave out --allow-unlocked and --pull-first")
        chosen_project = load_project(Path(project))
        for entry in progress.per_variant(variants, "building"):
            build_project(chosen_project, entry, matrix, settings)
        compose.prepare(settings=settings)
        return
    for entry in progress.per_variant(variants, "building"):
        if pull_first and (reference := publish.pull_first(entry, matrix, settings)):
            print(f"torchenv: {entry.name}: pulled the prebuilt {reference} (its lock matches); nothing was built")
            continue
        if pull_first:
            print(f"torchenv: {entry.name}: no prebuilt image with the current lock; building")
        build_variant(entry, matrix, settings)
    compose.prepare(settings=settings)


@task(
    help={
        "variant": "variant to lock (default: the matrix's default)",
        "all": "lock every variant",
        "platform": "lock only this platform (default: every platform of the variant)",
    }
)
@one_line_errors
def lock(c: Context, variant: str | None = None, all: bool = False, platform: str = "") -> None:
    """Resolve a variant's full dependency set with uv into images/locks/<variant>[-<arch>].txt (hash-locked)."""
    settings, matrix, variants = chosen(c, variant, all, platform)
    for line in lock_variants(lock_targets(matrix, variants, platform or None), settings):
        print(f"torchenv: {line}")


@task(
    help={
        "variant": "variant to rebuild twice from scratch (default: the matrix's default)",
        "platform": PLATFORM_HELP,
        "project": "then also this project's layers on it, twice from scratch",
        "against": "instead: rebuild the variant from this commit, push it as REF was pushed to a registry on 127.0.0.1 "
        "and compare with REF (a tag or digest in any registry)",
    }
)
@one_line_errors
def repro(c: Context, variant: str | None = None, platform: str = "", project: str = "", against: str = "") -> None:
    """Build the base and a variant twice from scratch; print "identical: <image id>" or what differs.
    With --against REF: rebuild once and compare with the published REF; "identical: <digest>" or what differs."""
    settings, matrix, (entry,) = chosen(c, variant, platform=platform)
    if against:
        if project:
            raise TorchenvError("--against compares a variant's image; leave out --project, or rebuild the project with invoke repro")
        comparison = reproduce_against(against, entry, matrix, settings)
        print("\n".join(comparison.lines()))
        if not comparison.identical:
            raise TorchenvError(f"{against} is not what this commit builds for {entry.name}: see the differences above")
        return
    report = reproduce(entry, settings, load_project(Path(project)) if project else None)
    print("\n".join(report.lines()))
    if not report.identical:
        raise TorchenvError(f"{entry.name} is not reproducible: the two builds differ (see above)")


@task(
    help={
        "registry": "registry host[:port] (log in with `docker login` first)",
        "variant": "variant to push",
        "all": "push every variant",
        "compression": "layer compression: zstd (default; smaller, Docker 23 and later pull it) or gzip (any client)",
    }
)
@one_line_errors
def push(c: Context, registry_: str = "", variant: str | None = None, all: bool = False, compression: str = "zstd") -> None:
    """Push tested images with all their tags; record their digests in images/digests.json."""
    if not registry_:
        raise TorchenvError("say where to push: invoke push --registry HOST[:PORT] (log in first with docker login)")
    publish.require_compression(compression)
    settings, matrix, variants = chosen(c, variant, all)
    for entry in variants:
        record = publish.push(entry.name, matrix, settings, registry_, compression)
        print(
            f"torchenv: pushed {entry.name} ({compression} layers) as {record.repository}@{record.digest} "
            f"({', '.join(record.tags)}; {', '.join(record.platforms)})"
        )


@task(help={"variant": "variant to pull", "registry": "pull from this registry instead of the recorded one", "platform": PLATFORM_HELP})
@one_line_errors
def pull(c: Context, variant: str | None = None, registry_: str = "", platform: str = "") -> None:
    """Pull a variant's pushed image (for this host's platform) by digest, check it against the matrix and lock, tag it."""
    settings, matrix, (entry,) = chosen(c, variant, platform=platform)
    reference = publish.pull(entry, matrix, settings, registry_ or None)
    trust = settings.trust()
    checked = f"its signature, provenance and SBOM verify against {trust.describe()}, " if trust else ""
    print(f"torchenv: pulled {reference}; {checked}it matches the matrix and lock and is tagged {image_tag(entry, settings)}")


@task(
    help={
        "variant": "variant whose built image's SBOM to audit (default: the matrix's default)",
        "report": "judge this grype JSON report instead of scanning (a scan made where grype's database can be reached)",
        "severity": "fail on findings at or above this severity: critical (default), high, medium, low, negligible",
        "sbom": "only write the image's SBOM to this file, for a scanner elsewhere (the GitHub workflow's)",
        "platform": PLATFORM_HELP,
    }
)
@one_line_errors
def audit(c: Context, variant: str | None = None, report: str = "", severity: str = "critical", sbom: str = "", platform: str = "") -> None:
    """Scan a built image's SBOM with grype; fail on findings at SEVERITY or above that images/audit-allowlist.toml does not accept."""
    settings, _, (entry,) = chosen(c, variant, platform=platform)
    if severity not in audit_model.SEVERITIES:
        raise TorchenvError(f"unknown severity {severity!r}; use one of {', '.join(audit_model.SEVERITIES)}")
    if sbom:
        print(f"torchenv: the SBOM of {entry.name} is in {audit_pipeline.write_sbom(entry, settings, Path(sbom))}")
        return
    if report:
        findings = audit_pipeline.read_report(Path(report))
    else:
        audit_pipeline.scanner()  # before the SBOM is copied out
        findings = audit_pipeline.scan(
            audit_pipeline.write_sbom(entry, settings, settings.work_dir / "audit" / f"{entry.build_name}.cdx.json")
        )
    verdict = audit_pipeline.judge_report(findings, severity)
    print("\n".join(f"torchenv: {line}" for line in audit_pipeline.verdict_lines(verdict, severity)))
    if not verdict.passed:
        raise TorchenvError(
            f"{len(verdict.failing)} finding(s) at {severity} or above are not accepted; upgrade what they name, or accept each with "
            f"a reason and an expiry date in images/audit-allowlist.toml"
        )


@task(
    name="verify-image",
    positional=["reference"],
    help={
        "reference": "the image to check: REPOSITORY:TAG or REPOSITORY@sha256:DIGEST",
        "key": "the signer's public key (default: TORCHENV_VERIFY_KEY)",
        "identity": "a keyless signer's certificate identity (default: TORCHENV_VERIFY_IDENTITY)",
        "issuer": "a keyless signer's OIDC issuer (default: TORCHENV_VERIFY_ISSUER)",
        "variant": "the variant its provenance must name",
        "platform": "of an index, the platform's image to check (default: this host's)",
    },
)
@one_line_errors
def verify_image(
    c: Context, reference: str, key: str = "", identity: str = "", issuer: str = "", variant: str = "", platform: str = ""
) -> None:
    """Check a pushed image's signature, provenance and SBOM with cosign; print what its provenance says."""
    settings = settings_of(c)
    trust = trust_from(key, identity, issuer) if key or identity or issuer else settings.trust()
    if trust is None:
        raise TorchenvError("say whom to trust: --key cosign.pub (or TORCHENV_VERIFY_KEY), or a keyless signer's --identity and --issuer")
    try:
        verified = publish.verify_reference(reference, matrix_of(settings), settings, trust, platform or host_platform(), variant)
    except Untrusted as refusal:
        raise TorchenvError(f"refusing {reference}: {refusal}") from None
    print(f"torchenv: {verified.reference} is signed by {trust.describe()}; its provenance says:")
    print("\n".join(f"  {line}" for line in verified.lines()))


def run_in_image(c: Context, variant: str | None, platform: str, command: list[str], interactive: bool = False) -> None:
    settings, _, (entry,) = chosen(c, variant, platform=platform)
    sys.exit(run.run_in_image(entry, settings, command, interactive))


@task(help={"variant": "variant to run (default: the matrix's default)", "platform": PLATFORM_HELP})
@one_line_errors
def verify(c: Context, variant: str | None = None, as_json: bool = False, platform: str = "") -> None:
    """Run `verify` in a built variant's container (--as-json for machines)."""
    run_in_image(c, variant, platform, ["verify"] + (["--json"] if as_json else []))


@task(help={"variant": "variant to run", "args": "extra arguments for train, e.g. '--epochs 3' or '--nproc 2'", "platform": PLATFORM_HELP})
@one_line_errors
def train(c: Context, variant: str | None = None, args: str = "", platform: str = "") -> None:
    """Run the training demo in a built variant's container; output lands in ./out."""
    run_in_image(c, variant, platform, ["train", *args.split()])


@task(
    help={
        "variant": "variant whose image the cluster runs (default: the matrix's default)",
        "args": "extra arguments for train, e.g. '--epochs 3'",
        "keep": "leave the cluster running (docker compose in build/slurm) to submit more jobs",
        "script": "instead: write a batch script for a real cluster, pyxis or apptainer, and print its path",
        "image": "with --script: the image the cluster pulls (default: the variant's pushed digest in images/digests.json)",
        "nodes": "with --script: how many nodes (default 2)",
        "gpus_per_node": "with --script: GPUs to ask for on each node, one process each (default 1)",
    }
)
@one_line_errors
def slurm(
    c: Context,
    variant: str | None = None,
    args: str = "",
    keep: bool = False,
    script: str = "",
    image: str = "",
    nodes: int = 2,
    gpus_per_node: int = 1,
) -> None:
    """Train the demo with sbatch on a two-node Slurm cluster in containers; or write a pyxis/Apptainer batch script."""
    settings, matrix, (entry,) = chosen(c, variant)
    if script:
        reference = image or publish.pushed_reference(entry, settings)
        path = slurm_pipeline.write_script(script, entry, reference, nodes, gpus_per_node, settings.work_dir / "slurm-scripts")
        print(f"torchenv: wrote {path} (sbatch it on the cluster; it runs {reference})")
        return
    out = slurm_pipeline.rehearse(entry, matrix, settings, args.split(), keep)
    print(f"torchenv: the Slurm job trained on 2 nodes; metrics and checkpoint in {out}")


@task(
    help={
        "variant": "variant whose image the pods run (default: the matrix's default)",
        "kind": "indexed-job (a Job and its headless Service), pytorchjob (Kubeflow's training-operator), trainjob (Kubeflow Trainer v2) "
        "or rayjob (KubeRay; the raytrain project's image)",
        "name": "the job's name (default torchenv-train)",
        "nodes": "pods, one torchrun each (default 2)",
        "image": "the image the cluster pulls (default: the variant's pushed digest in images/digests.json)",
        "gpus_per_node": "GPUs each pod asks for, one process each (CUDA variants; default 1; 0 runs a CUDA image on CPU nodes)",
        "project": "rayjob: the project whose image the pods run, for its lock's Ray (default examples/raytrain)",
        "shm_size": "each pod's /dev/shm, a memory emptyDir (default 8Gi)",
        "out_claim": "a ReadWriteMany PersistentVolumeClaim for /out, where a restarted pod finds the checkpoint",
    }
)
@one_line_errors
def manifests(
    c: Context,
    variant: str | None = None,
    kind: str = "indexed-job",
    name: str = "torchenv-train",
    nodes: int = 2,
    image: str = "",
    gpus_per_node: int = 1,
    shm_size: str = "8Gi",
    out_claim: str = "",
    project: str = "",
) -> None:
    """Write Kubernetes manifests that train the demo on N pods, checked against their schemas (kubectl apply -f)."""
    settings, _, (entry,) = chosen(c, variant)
    ray_version = None
    if kind == "rayjob":
        ray_version = kubernetes.ray_version(load_project(Path(project or PROJECT_ROOT / "examples" / "raytrain")), entry)
        if not image:
            raise TorchenvError("--kind rayjob: the pods run the raytrain project's image; build and push it, then pass --image REF")
    reference = image or publish.pushed_reference(entry, settings)
    spec = kubernetes.JobSpec(kind, name, reference, nodes, gpus_per_node, shm_size, out_claim or None, ray_version=ray_version)
    path = kubernetes.write(entry, spec, settings.work_dir / "manifests")
    print(f"torchenv: wrote {path} (kubectl apply -f {path}; it runs {spec.image})")


@task(help={"variant": "variant to open a shell in", "platform": PLATFORM_HELP})
@one_line_errors
def shell(c: Context, variant: str | None = None, platform: str = "") -> None:
    """Open a bash shell in a built variant's container."""
    run_in_image(c, variant, platform, ["bash"], interactive=True)


@task(
    help={
        "variant": "after the unit tier, build and test only this variant's image (default: every variant buildable here)",
        "all": "every variant (the default, said explicitly)",
        "unit": "the unit tier only (offline, no Docker; under a minute)",
        "image": "test this existing image (tag or ID) as it is, nothing built or downloaded; repeatable",
        "every_platform": "also build and test each variant's other platforms, emulated (cpu's arm64 image: some 17 minutes on 2 cores)",
        "project": "build this project on --variant (default: the default variant), then run the image tests and its own tests on it",
    },
    iterable=["image"],
)
@one_line_errors
def test(
    c: Context,
    variant: str | None = None,
    all: bool = False,
    unit: bool = False,
    image: list[str] | None = None,
    every_platform: bool = False,
    project: str = "",
) -> None:
    """Run the tests by tier: unit first (a failure stops the run), then Docker, images, registry."""
    if variant and all:
        raise TorchenvError("choose either --variant NAME or --all, not both")
    if variant:
        matrix_of(settings_of(c)).get(variant)  # unknown names fail here, in one line
    if project:
        if all or image or every_platform:
            raise TorchenvError("--project tests one project on one variant: leave out --all, --image and --every-platform")
        settings, matrix, (entry,) = chosen(c, variant)
        chosen_project = load_project(Path(project))
        tag = build_project(chosen_project, entry, matrix, settings)
        code = testrun.run(testrun.tiers(images=(tag,)))
        sys.exit(code or project_tests(tag, chosen_project, entry, settings))
    tiers = testrun.tiers(unit_only=unit, variant=variant, images=tuple(image or ()), every_platform=every_platform)
    sys.exit(testrun.run(tiers))


@task
@one_line_errors
def demo(c: Context) -> None:
    """Build the default variant, then `docker compose run` verify and train."""
    settings, matrix, (entry,) = chosen(c, None)
    run.demo(entry, matrix, settings)


@task(
    help={
        "variants": f"comma-separated variants to measure (default: {performance.BENCH_VARIANTS})",
        "cold": "also time a cold build against its floor (empties torchenv's build cache; downloads every wheel twice)",
        "publishing": "instead: the push per zstd level and pull-to-ready on an empty second engine, against the naive "
        "image (about 45 min; bench/publishing.py)",
    }
)
@one_line_errors
def bench(c: Context, variants: str = "", cold: bool = False, publishing: bool = False) -> None:
    """Measure sizes, build, start and run times side by side with their baselines; print the ratios."""
    for name in (variants or performance.BENCH_VARIANTS).split(","):
        matrix_of(settings_of(c)).get(name.strip())  # an unknown name fails here, in one line
    if publishing:
        chosen_variant = ["--variant", variants.split(",")[0].strip()] if variants else []
        sys.exit(subprocess.run([sys.executable, "-m", "bench.publishing", *chosen_variant], cwd=PROJECT_ROOT).returncode)
    args = [sys.executable, "-m", "bench.performance", *(["--variants", variants] if variants else []), *(["--cold"] if cold else [])]
    sys.exit(subprocess.run(args, cwd=PROJECT_ROOT).returncode)


@task(name="lock-tools")
@one_line_errors
def lock_tools(c: Context) -> None:
    """Lock the host tools declared in pyproject.toml into requirements-dev.txt (uv, with hashes)."""
    sys.exit(subprocess.run(host_tools.lock_command(), cwd=PROJECT_ROOT).returncode)


@task(help={"folder": "where report.md and sizes.png go (default: docs/performance)"})
@one_line_errors
def report(c: Context, folder: str = "docs/performance") -> None:
    """Write the latest bench results as a Markdown table and a PNG chart of size per variant and layer."""
    sys.exit(subprocess.run([sys.executable, "-m", "bench.report", "--folder", folder], cwd=PROJECT_ROOT).returncode)


@task
@one_line_errors
def clean(c: Context) -> None:
    """Remove torchenv's images and its build cache (nothing else of Docker's)."""
    images, records = clean_torchenv(settings_of(c))
    print(f"torchenv: removed {images} images and {records} build cache records")


namespace = Collection(
    list_,
    matrix,
    lock,
    lock_tools,
    build,
    repro,
    push,
    pull,
    verify_image,
    audit,
    verify,
    train,
    shell,
    slurm,
    manifests,
    test,
    demo,
    bench,
    report,
    clean,
)
namespace.configure({"torchenv": {}})
