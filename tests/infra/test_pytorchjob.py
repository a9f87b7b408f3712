"""Multi-node elastic pretraining (infra/kubernetes/pretrain-elastic): both overlays rendered by
kubectl's kustomize; the PyTorchJob validated against the training-operator CRD's schema (vendored
in infra/kubernetes/schemas) and its pod templates against the Kubernetes 1.32 API; the command
line parsed by torchrun under the operator's PET_* environment, then by eegfm-pretrain's parser;
N x M, GPUs, image flavour and the shared checkpoint volume checked against each other."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from tests.infra.test_kubernetes import GPU_LABEL, GPU_TAINT, K8S_VERSION, KUBERNETES, REPO, _env, _expanded, render

SCHEMA = KUBERNETES / "schemas" / "pytorchjob-kubeflow-v1.json"
OVERLAYS = ("gpu", "cpu")
OPERATOR_PORT = 23456  # training-operator's PyTorchJobDefaultPort: the master service's rendezvous port


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {overlay: render(f"pretrain-elastic/{overlay}") for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def validator():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _job(docs: list[dict]) -> dict:
    [job] = [d for d in docs if d["kind"] == "PyTorchJob"]
    return job


def _replicas(job: dict) -> dict[str, dict]:
    return job["spec"]["pytorchReplicaSpecs"]


def _container(replica: dict) -> dict:
    [container] = replica["template"]["spec"]["containers"]
    return container


def test_every_object_is_valid_against_the_crd_and_the_kubernetes_api(rendered, validator):
    import kubernetes_validate

    for overlay, docs in rendered.items():
        for doc in docs:
            if doc["kind"] != "PyTorchJob":
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            assert doc["kind"] in ("Namespace", "StorageClass") or doc["metadata"]["namespace"] == "eegfm"
        job = _job(docs)
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(job)]
        assert not errors, (overlay, errors)
        for kind, replica in _replicas(job).items():
            pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": kind.lower()}}
            pod_template["template"] = replica["template"]
            try:
                kubernetes_validate.validate(pod_template, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{overlay}: {kind} pod template: {err.message} at {err.path}")


@pytest.mark.parametrize(
    "break_it",
    [
        lambda spec: spec["elasticPolicy"].update(rdzvBackend=42),
        lambda spec: spec.pop("pytorchReplicaSpecs"),
        lambda spec: spec["pytorchReplicaSpecs"]["Worker"].update(replicas="three"),
        lambda spec: spec["elasticPolicy"].update(minReplica=2),  # a typo: strict field validation
        lambda spec: spec["runPolicy"].update(backoffLimit=-0.5),
    ],
    ids=["rdzvBackend-not-a-string", "no-replica-specs", "replicas-not-an-int", "unknown-field", "float-int"],
)
def test_a_broken_pytorchjob_fails_validation(rendered, validator, break_it):
    job = copy.deepcopy(_job(rendered["gpu"]))
    assert validator.is_valid(job)
    break_it(job["spec"])
    assert not validator.is_valid(job)


def test_n_nodes_by_m_ranks_agree_everywhere(rendered):
    for overlay, docs in rendered.items():
        job = _job(docs)
        policy, replicas = job["spec"]["elasticPolicy"], _replicas(job)
        assert set(replicas) == {"Master", "Worker"} and replicas["Master"]["replicas"] == 1
        nodes = 1 + replicas["Worker"]["replicas"]
        # min = max = N: a checkpoint resumes only at the world size that wrote it
        assert policy["minReplicas"] == policy["maxReplicas"] == nodes, overlay
        assert policy["rdzvBackend"] == "c10d" and policy["maxRestarts"] >= 3
        for replica in replicas.values():
            assert replica["restartPolicy"] == "OnFailure"
            container = _container(replica)
            assert container["name"] == "pytorch"  # the container the operator injects PET_* into
            gpus = container["resources"]["limits"].get(GPU_TAINT)
            assert gpus is None if overlay == "cpu" else gpus == policy["nProcPerNode"], overlay
    assert _job(rendered["gpu"])["spec"]["elasticPolicy"]["maxReplicas"] > 1  # multi-node


def _operator_env(job: dict) -> dict[str, str]:
    """The PET_* variables training-operator's elastic mode sets in every pod (torchrun reads them
    as its --nnodes, --nproc_per_node, --max_restarts, --rdzv_backend, --rdzv_endpoint)."""
    policy = job["spec"]["elasticPolicy"]
    return {
        "PET_NNODES": f"{policy['minReplicas']}:{policy['maxReplicas']}",
        "PET_NPROC_PER_NODE": str(policy["nProcPerNode"]),
        "PET_MAX_RESTARTS": str(policy["maxRestarts"]),
        "PET_RDZV_BACKEND": policy["rdzvBackend"],
        "PET_RDZV_ENDPOINT": f"{job['metadata']['name']}-master-0:{OPERATOR_PORT}",
    }


def test_torchrun_and_pretrain_parse_the_command_under_the_operators_environment(rendered, monkeypatch):
    from torch.distributed.run import get_args_parser as torchrun_parser

    from eegfm.training.pretrain import build_parser as pretrain_parser

    for docs in rendered.values():
        job = _job(docs)
        for name, value in _operator_env(job).items():
            monkeypatch.setenv(name, value)  # torchrun's parser takes its defaults from them
        for replica in _replicas(job).values():
            container = _container(replica)
            words = _expanded(container["command"] + container["args"], _env(docs, container))
            assert words[0] == "torchrun" and not any(w.startswith("--nnodes") for w in words)
            launcher = torchrun_parser().parse_args(words[1:])
            policy = job["spec"]["elasticPolicy"]
            assert launcher.nnodes == f"{policy['maxReplicas']}:{policy['maxReplicas']}"
            assert int(launcher.nproc_per_node) == policy["nProcPerNode"]
            assert launcher.rdzv_backend == "c10d" and launcher.rdzv_endpoint.endswith(f":{OPERATOR_PORT}")
            assert launcher.module and launcher.training_script == "eegfm.training.pretrain"
            args = pretrain_parser().parse_args(launcher.training_script_args)
            assert args.data == ["s3://eegfm-processed/tfrecords"] and args.resume == "auto"
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in replica["template"]["spec"]["volumes"]}
            assert str(args.output).startswith("/runs/")
            assert volumes[mounts["/runs"]]["persistentVolumeClaim"]["claimName"] == "eegfm-runs-shared"


def test_the_checkpoints_live_on_a_volume_every_node_mounts(rendered):
    for docs in rendered.values():
        [claim] = [
            d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "eegfm-runs-shared"
        ]
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        for replica in _replicas(_job(docs)).values():
            pod = replica["template"]["spec"]
            assert pod["terminationGracePeriodSeconds"] >= 120  # time for the SIGTERM checkpoint
            # torchrun SIGKILLs its ranks this long after passing SIGTERM on: within the grace period
            env = {e["name"]: e["value"] for e in _container(replica)["env"]}
            assert 120 <= int(env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"]) < pod["terminationGracePeriodSeconds"]
            assert pod["serviceAccountName"] == "eegfm" and pod["securityContext"]["runAsNonRoot"]
            context = _container(replica)["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]


def test_the_gpu_overlay_asks_for_gpus_and_the_nccl_image_the_cpu_one_not(rendered):
    component = yaml.safe_load((KUBERNETES / "components" / "image" / "kustomization.yaml").read_text())
    [image] = component["images"]
    for overlay, docs in rendered.items():
        for replica in _replicas(_job(docs)).values():
            pod, container = replica["template"]["spec"], _container(replica)
            # the registry and release of every other workload, in this overlay's flavour
            assert container["image"] == f"{image['newName']}:{image['newTag']}-{overlay}"
            if overlay == "gpu":
                assert container["resources"]["requests"][GPU_TAINT] >= 1
                assert pod["nodeSelector"] == dict([GPU_LABEL])
                assert {"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
            else:
                assert GPU_TAINT not in container["resources"]["requests"]
                assert "nodeSelector" not in pod and "tolerations" not in pod


def _stages(dockerfile: str) -> dict[str, str]:
    parts = re.split(r"^FROM (\S+)(?: AS (\S+))?$", dockerfile, flags=re.M)
    return {name or base: f"FROM {base}\n{body}" for base, name, body in zip(parts[1::3], parts[2::3], parts[3::3])}


def test_the_image_flavours_build_horovod_with_nccl_on_cuda_and_with_gloo_on_cpu():
    dockerfile = (REPO / "infra" / "docker" / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    assert re.search(r"^ARG FLAVOR=cpu$", dockerfile, re.M)
    assert {"horovod-cpu", "horovod-gpu", "base-cpu", "base-gpu"} <= set(stages)
    assert "FROM horovod-${FLAVOR}" in dockerfile and "FROM base-${FLAVOR}" in dockerfile
    gpu, cpu = stages["horovod-gpu"], stages["horovod-cpu"]
    assert gpu.startswith("FROM nvidia/cuda:") and "-devel-" in gpu.splitlines()[0]
    assert "HOROVOD_GPU_OPERATIONS=NCCL" in gpu and "install_horovod.sh" in gpu
    assert "HOROVOD_GPU_OPERATIONS" not in cpu and "install_horovod.sh" in cpu
    assert stages["base-gpu"].startswith("FROM nvidia/cuda:") and stages["base-cpu"].startswith("FROM python:3.11-")
    script = (REPO / "scripts" / "install_horovod.sh").read_text()
    assert "HOROVOD_WITH_GLOO=1" in script and "nccl_built()" in script
