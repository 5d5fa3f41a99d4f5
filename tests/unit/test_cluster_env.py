"""train's launch settings read from each cluster engine's environment, as the engine's
documentation and controller source define it (no torch needed; docs/clusters.md)."""

from __future__ import annotations

import sys

import pytest

from torchenv import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "docker" / "app"))
from torchenv_app import cluster, distributed, train

# torch 2.0.1's torchrun options that take a value, both spellings (torch.distributed.run's
# get_args_parser() in the image); anything else train passes would be refused by it.
TORCHRUN_2_0_OPTIONS = {
    "--nnodes", "--nproc_per_node", "--nproc-per-node", "--rdzv_backend", "--rdzv-backend", "--rdzv_endpoint",
    "--rdzv-endpoint", "--rdzv_id", "--rdzv-id", "--rdzv_conf", "--rdzv-conf", "--max_restarts", "--max-restarts",
    "--node_rank", "--node-rank", "--master_addr", "--master-addr", "--master_port", "--master-port",
}  # fmt: skip

# srun -N2 --ntasks-per-node=1 (slurm.schedmd.com/srun.html, OUTPUT ENVIRONMENT VARIABLES),
# as the second node's task sees it.
SLURM_STEP = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_JOB_NODELIST": "gpu[07-08]",
    "SLURM_STEP_ID": "0",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_STEP_NODELIST": "gpu[07-08]",
    "SLURM_NODEID": "1",
    "SLURMD_NODENAME": "gpu08",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "0",
}
# What enroot's 50-slurm-pytorch.sh hook adds under pyxis when the image sets PYTORCH_VERSION.
ENROOT_HOOK = {
    "PYTORCH_VERSION": "2.0.1",
    "MASTER_ADDR": "gpu07",
    "MASTER_PORT": "65242",
    "WORLD_SIZE": "2",
    "RANK": "1",
    "LOCAL_RANK": "0",
}


def plan_for(env: dict[str, str], *flags: str, fqdn: str = "") -> cluster.LaunchPlan:
    args = train.parse_args(list(flags))
    return cluster.plan_from(args, env, lambda: 8, max_restarts=args.max_restarts, fqdn=lambda: fqdn, timeout=args.rdzv_timeout)


@pytest.mark.parametrize(
    ("hostlist", "hosts"),
    [
        ("node1", ["node1"]),
        ("n[8-10]", ["n8", "n9", "n10"]),
        ("n[08-10]", ["n08", "n09", "n10"]),
        ("a,b[3,5-6]", ["a", "b3", "b5", "b6"]),
        ("n[1-2]-ib", ["n1-ib", "n2-ib"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
    ],
)
def test_slurm_host_lists_expand_as_slurm_reads_them(hostlist: str, hosts: list[str]) -> None:
    assert cluster.expand_hostlist(hostlist) == hosts


@pytest.mark.parametrize("hostlist", ["n[1-2", "n1-2]", "n[a-b]"])
def test_a_broken_host_list_is_named(hostlist: str) -> None:
    with pytest.raises(cluster.ClusterError, match="host list"):
        cluster.expand_hostlist(hostlist)


def test_srun_one_task_per_node_gives_the_node_its_rank_and_the_first_host_as_master() -> None:
    plan = plan_for(SLURM_STEP, "--nproc", "4")
    assert (plan.engine, plan.nnodes, plan.node_rank, plan.nproc) == ("slurm", 2, 1, 4)
    # No hook: the port by the hook's own rule, 61000 + job id mod 4536.
    assert plan.master == f"gpu07:{61000 + 4242 % 4536}"
    assert (plan.rdzv, plan.rdzv_id) == ("c10d", "4242")


def test_under_pyxis_the_hooks_port_is_used_and_its_rank_variables_are_not_mistaken_for_torchrun() -> None:
    env = {**SLURM_STEP, **ENROOT_HOOK, "MASTER_PORT": "61234"}
    plan = plan_for(env)
    assert (plan.master, plan.node_rank, plan.nnodes) == ("gpu07:61234", 1, 2)
    # The hook's LOCAL_RANK/RANK/WORLD_SIZE do not make train a torchrun worker.
    saved = dict(distributed.os.environ)
    try:
        distributed.os.environ.update(env)
        distributed.os.environ.pop("TORCHELASTIC_RUN_ID", None)
        assert distributed.current() is None
        distributed.os.environ["TORCHELASTIC_RUN_ID"] = "4242"
        assert distributed.current() is not None
    finally:
        distributed.os.environ.clear()
        distributed.os.environ.update(saved)


def test_the_node_rank_comes_from_the_node_name_in_the_steps_list() -> None:
    # A step on part of the allocation: the node's place in the step's own list counts.
    env = {**SLURM_STEP, "SLURM_STEP_NODELIST": "gpu[03,08]", "SLURMD_NODENAME": "gpu03", "SLURM_NODEID": "1"}
    plan = plan_for(env)
    assert (plan.node_rank, plan.master_host) == (0, "gpu03")


def test_a_slurm_batch_script_of_several_nodes_is_told_to_use_srun() -> None:
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_NODEID": "0"}
    with pytest.raises(cluster.ClusterError, match=r"^train runs in the batch script .* `srun --ntasks-per-node=1"):
        plan_for(env)
    single = plan_for({**env, "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "n1"})
    assert (single.nnodes, single.nproc) == (1, 1)


def test_several_tasks_per_node_are_refused_in_one_line() -> None:
    env = {**SLURM_STEP, "SLURM_STEP_NUM_TASKS": "8"}
    with pytest.raises(cluster.ClusterError, match=r"srun started 8 tasks on 2 node\(s\).*--ntasks-per-node=1") as error:
        plan_for(env)
    assert "\n" not in str(error.value)


def test_pytorchjob_without_nproc_per_node_reads_the_pods_rank_and_world_size() -> None:
    # training-operator's setPodEnv: worker i gets RANK i + 1, WORLD_SIZE = all replicas;
    # MASTER_ADDR is the master pod's name, MASTER_PORT its "pytorchjob-port".
    env = {"MASTER_ADDR": "finetune-master-0", "MASTER_PORT": "23456", "WORLD_SIZE": "3", "RANK": "2", "PYTHONUNBUFFERED": "0"}
    plan = plan_for(env)
    assert (plan.engine, plan.nnodes, plan.node_rank, plan.nproc) == ("pytorchjob", 3, 2, 1)
    assert (plan.master, plan.rdzv, plan.rdzv_id) == ("finetune-master-0:23456", "c10d", "finetune")


def test_pytorchjob_with_nproc_per_node_and_an_elastic_policy() -> None:
    env = {
        "MASTER_ADDR": "finetune-master-0", "MASTER_PORT": "23456", "WORLD_SIZE": "8", "RANK": "1",
        "PET_NNODES": "2:2", "PET_NPROC_PER_NODE": "4", "PET_NODE_RANK": "1",
        "PET_RDZV_BACKEND": "c10d", "PET_RDZV_ENDPOINT": "finetune-master-0:23456", "PET_RDZV_ID": "finetune",
    }  # fmt: skip
    plan = plan_for(env)
    assert (plan.engine, plan.nnodes, plan.node_rank, plan.nproc, plan.master) == ("pytorchjob", 2, 1, 4, "finetune-master-0:23456")
    with pytest.raises(cluster.ClusterError, match="PET_NNODES='1:4'"):
        plan_for({**env, "PET_NNODES": "1:4"})


def test_an_elastic_policys_standalone_is_refused_for_several_nodes_and_harmless_for_one() -> None:
    # training-operator sets PET_STANDALONE to "" for elasticPolicy.standalone: true.
    env = {"MASTER_ADDR": "ft-master-0", "MASTER_PORT": "23456", "WORLD_SIZE": "2", "RANK": "1", "PET_NNODES": "2", "PET_STANDALONE": ""}
    with pytest.raises(cluster.ClusterError, match=r"^PET_STANDALONE is set .* for a job of 2 nodes: .*remove standalone"):
        plan_for(env)
    assert plan_for({**env, "PET_STANDALONE": "0"}).nnodes == 2
    single = plan_for({**env, "PET_NNODES": "1", "RANK": "0", "WORLD_SIZE": "1"})
    assert (single.nnodes, single.node_rank) == (1, 0)


def test_trainjob_leaves_its_pet_variables_as_torchrun_reads_them() -> None:
    # Trainer v2's torch plugin: static rendezvous at node 0 of the JobSet, "auto" processes.
    env = {
        "PET_NNODES": "2",
        "PET_NPROC_PER_NODE": "auto",
        "PET_NODE_RANK": "0",
        "PET_MASTER_ADDR": "tj-node-0-0.tj",
        "PET_MASTER_PORT": "29500",
    }
    plan = plan_for(env)
    assert (plan.engine, plan.nnodes, plan.node_rank, plan.nproc, plan.master) == ("trainjob", 2, 0, 8, "tj-node-0-0.tj:29500")
    assert plan_for({**env, "PET_NPROC_PER_NODE": "2"}).nproc == 2


def test_an_indexed_job_names_pod_0_through_its_headless_service() -> None:
    env = {"JOB_COMPLETION_INDEX": "1", "TORCHENV_NNODES": "2"}
    plan = plan_for(env, fqdn="ddp-1.ddp-nodes.team.svc.cluster.local")
    assert (plan.engine, plan.nnodes, plan.node_rank, plan.rdzv_id) == ("indexed-job", 2, 1, "ddp")
    assert plan.master == "ddp-0.ddp-nodes.team.svc.cluster.local:29500"
    assert plan_for({**env, "TORCHENV_MASTER": "head:1234"}, fqdn="ddp-1").master == "head:1234"


@pytest.mark.parametrize(
    ("env", "fqdn", "message"),
    [
        ({"JOB_COMPLETION_INDEX": "1"}, "ddp-1.nodes", "set TORCHENV_NNODES to the Job's completions"),
        ({"JOB_COMPLETION_INDEX": "1", "TORCHENV_NNODES": "2"}, "ddp-1", "give the Job's pod template a subdomain"),
        ({"JOB_COMPLETION_INDEX": "x"}, "ddp-1", "JOB_COMPLETION_INDEX='x' is not a whole number"),
    ],
)
def test_an_indexed_job_that_cannot_be_placed_says_what_to_set(env: dict[str, str], fqdn: str, message: str) -> None:
    with pytest.raises(cluster.ClusterError, match=message):
        plan_for(env, fqdn=fqdn)


def test_flags_win_over_the_engine_and_nothing_means_one_process() -> None:
    plan = plan_for(SLURM_STEP, "--nnodes", "2", "--node-rank", "0", "--master", "head:29600", "--rdzv", "static")
    assert (plan.node_rank, plan.master, plan.rdzv) == (0, "head:29600", "static")
    alone = plan_for({})
    assert (alone.engine, alone.nproc, alone.nnodes, alone.rdzv) == ("", 1, 1, "static")
    with pytest.raises(cluster.ClusterError, match="between 0 and 1"):
        plan_for({}, "--nnodes", "2", "--node-rank", "2")
    with pytest.raises(cluster.ClusterError, match="HOST:PORT"):
        plan_for({}, "--nnodes", "2", "--master", "head")


def test_torchrun_gets_c10d_with_node_0_hosting_the_store_in_torch_2_0_spellings() -> None:
    worker = plan_for(SLURM_STEP, "--max-restarts", "1", "--rdzv-timeout", "120")
    options = distributed.torchrun_options(worker, loopback_port=1)
    assert set(options[::2]) <= TORCHRUN_2_0_OPTIONS
    given = dict(zip(options[::2], options[1::2], strict=True))
    assert given["--rdzv_backend"] == "c10d" and given["--rdzv_endpoint"] == worker.master
    assert (given["--rdzv_conf"], given["--rdzv_id"], given["--max_restarts"], given["--nnodes"]) == (
        "is_host=0,join_timeout=120,read_timeout=120",
        "4242",
        "1",
        "2",
    )
    master = plan_for({**SLURM_STEP, "SLURMD_NODENAME": "gpu07", "SLURM_NODEID": "0"})
    assert dict(zip(*[iter(distributed.torchrun_options(master, 1))] * 2, strict=True))["--rdzv_conf"].startswith("is_host=1,")
    static = distributed.torchrun_options(plan_for({}, "--nnodes", "2", "--node-rank", "1", "--master", "h:5", "--rdzv", "static"), 1)
    assert set(static[::2]) <= TORCHRUN_2_0_OPTIONS and static[-6:] == ["--node_rank", "1", "--master_addr", "h", "--master_port", "5"]
    alone = distributed.torchrun_options(plan_for({}, "--nproc", "2"), loopback_port=4711)
    assert alone[-4:] == ["--master_addr", "127.0.0.1", "--master_port", "4711"]


def test_the_launchers_own_options_do_not_reach_the_ranks() -> None:
    argv = ["--epochs", "2", "--rdzv", "c10d", "--max-restarts=1", "--nnodes", "2", "--seed", "3"]
    assert distributed.rank_argv(argv) == ["--epochs", "2", "--seed", "3"]
