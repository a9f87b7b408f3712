"""The Kubernetes manifests: rendered by kustomize (kubectl's, offline), validated against the
Kubernetes 1.32 API schemas (kubernetes-validate, strict), and checked against the code they run:
every command line parses with the real command's own parser, every $(VAR) is defined, GPU pods
land on and tolerate the GPU node group terraform makes, and the serving probes hit a real endpoint."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "infra" / "kubernetes"
WORKLOADS = ("preprocess", "pretrain", "finetune", "serve")
K8S_VERSION = "1.32.0"  # infra/terraform/aws's default kubernetes_version
GPU_LABEL, GPU_TAINT = ("eegfm.io/accelerator", "nvidia"), "nvidia.com/gpu"  # infra/terraform/aws nodes.tf


def render(workload: str) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (its built-in kustomize renders the manifests) is not installed")
    done = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / workload)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {workload: render(workload) for workload in WORKLOADS}


def _pod(docs: list[dict]) -> tuple[dict, dict]:
    [workload] = [d for d in docs if d["kind"] in ("Job", "Deployment")]
    return workload, workload["spec"]["template"]["spec"]


def _expanded(words: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion; an undefined name fails the test."""

    def value(match: re.Match) -> str:
        assert match.group(1) in env, f"$({match.group(1)}) is not defined in the container's env"
        return env[match.group(1)]

    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value, word) for word in words]


def _env(docs: list[dict], container: dict) -> dict[str, str]:
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    env = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})  # not secrets
    return env


def test_every_object_is_valid_against_the_kubernetes_api_schema(rendered):
    import kubernetes_validate

    for workload, docs in rendered.items():
        kinds = {d["kind"] for d in docs}
        assert {"Namespace", "ServiceAccount", "ConfigMap", "StorageClass", "PersistentVolumeClaim"} <= kinds
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{workload}: {doc['kind']} {doc['metadata']['name']}: {err.message} at {err.path}")
            if doc["kind"] not in ("Namespace", "StorageClass"):
                assert doc["metadata"]["namespace"] == "eegfm", (workload, doc["kind"])


def test_pods_meet_the_restricted_pod_security_standard_and_use_the_built_image(rendered):
    for docs in rendered.values():
        _, pod = _pod(docs)
        assert pod["serviceAccountName"] == "eegfm"  # the one EKS Pod Identity maps to the S3 role
        assert (
            pod["securityContext"]["runAsNonRoot"]
            and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        )
        [container] = pod["containers"]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
        assert re.fullmatch(r"\S+\.dkr\.ecr\.\S+/eegfm:\S+", container["image"]), container["image"]
        assert "memory" in container["resources"]["limits"]


def _module_argv(words: list[str], module: str) -> list[str]:
    assert words[:3] == ["python", "-m", module], words
    return words[3:]


def test_command_lines_parse_with_the_commands_own_parsers(rendered):
    from torch.distributed.run import get_args_parser as torchrun_parser

    from eegfm.pipelines.preprocess import build_parser as preprocess_parser
    from eegfm.serving.server import build_parser as serve_parser
    from eegfm.training.finetune import build_parser as finetune_parser
    from eegfm.training.pretrain import build_parser as pretrain_parser

    commands = {}
    for workload, docs in rendered.items():
        _, pod = _pod(docs)
        container = pod["containers"][0]
        words = _expanded(container["command"] + container.get("args", []), _env(docs, container))
        if words[:2] == ["sh", "-c"]:
            commands[workload] = [shlex.split(part) for part in words[2].split("&&")]
        else:
            commands[workload] = [words]

    [preprocess] = commands["preprocess"]
    args, beam = preprocess_parser().parse_known_args(_module_argv(preprocess, "eegfm.pipelines.preprocess"))
    assert args.input == ["s3://eegfm-raw/"] and args.output == "s3://eegfm-processed/tfrecords"
    assert beam == ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=4"]

    [pretrain] = commands["pretrain"]
    assert pretrain[0] == "torchrun"
    launcher = torchrun_parser().parse_args(pretrain[1:])
    assert launcher.module and launcher.training_script == "eegfm.training.pretrain"
    args = pretrain_parser().parse_args(launcher.training_script_args)
    assert args.data == ["s3://eegfm-processed/tfrecords"] and args.resume == "auto"
    gpus = _pod(rendered["pretrain"])[1]["containers"][0]["resources"]["limits"][GPU_TAINT]
    assert int(launcher.nproc_per_node) == gpus  # a rank per GPU the pod asks for

    train, publish = commands["finetune"]
    args = finetune_parser().parse_args(_module_argv(train, "eegfm.training.finetune"))
    assert str(args.pretrained) == "/runs/pretrain/model" and str(args.output) == "/runs/finetune"
    assert _module_argv(publish, "eegfm.serving.model_store") == [str(args.output), "s3://eegfm-models/runs/finetune"]

    [serve] = commands["serve"]
    args = serve_parser().parse_args(_module_argv(serve, "eegfm.serving.server"))
    assert args.model == "s3://eegfm-models/runs/finetune" and args.host == "0.0.0.0" and args.backend == "onnx"


def test_training_runs_on_the_gpu_nodes_and_survives_preemption(rendered):
    for workload in ("pretrain", "finetune"):
        job, pod = _pod(rendered[workload])
        assert pod["nodeSelector"] == dict([GPU_LABEL])
        assert {"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] >= 120  # time to checkpoint
        rules = job["spec"]["podFailurePolicy"]["rules"]
        assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
        assert claims[mounts["/runs"]] == "eegfm-runs"  # checkpoints outlive the pod
    pod = _pod(rendered["pretrain"])[1]  # torchrun SIGKILLs its ranks this long after passing SIGTERM on
    timeout = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"]
    assert 120 <= int(timeout) < pod["terminationGracePeriodSeconds"]
    _, pod = _pod(rendered["preprocess"])
    assert "nodeSelector" not in pod and "tolerations" not in pod  # CPU nodes: GPUs are for training


def test_the_gpu_nodes_get_the_device_plugin_that_offers_their_gpus():
    import kubernetes_validate

    [plugin] = render("cluster")
    kubernetes_validate.validate(plugin, K8S_VERSION, strict=True)
    assert plugin["kind"] == "DaemonSet" and plugin["metadata"]["namespace"] == "kube-system"
    pod = plugin["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == dict([GPU_LABEL])
    assert {"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    [mount] = pod["containers"][0]["volumeMounts"]
    assert mount["mountPath"] == "/var/lib/kubelet/device-plugins"
    assert re.fullmatch(r"\S+/k8s-device-plugin:v\d+\.\d+\.\d+", pod["containers"][0]["image"])  # pinned


def test_the_serving_probes_and_ports_match_the_server(rendered, finetuned, monkeypatch):
    from tests.serving.serve_helpers import API_KEY, serving

    docs = rendered["serve"]
    deployment, pod = _pod(docs)
    [container] = pod["containers"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert f"--port={port}" in container["args"]
    [service] = [d for d in docs if d["kind"] == "Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    [hpa] = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    # the API keys come from a Secret, as EEGFM_API_KEYS; every probe path answers 200 without one
    [keys] = [e for e in container["env"] if e["name"] == "EEGFM_API_KEYS"]
    assert keys["valueFrom"]["secretKeyRef"]["name"] == "eegfm-serve-api-keys"
    monkeypatch.setenv("EEGFM_API_KEYS", API_KEY)
    with serving(["--model", str(finetuned)]) as server:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert server.request("GET", container[probe]["httpGet"]["path"])[0] == 200, probe
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert server.request("GET", annotations["prometheus.io/path"])[0] == 200
        assert int(annotations["prometheus.io/port"]) == port


def test_the_configmap_has_the_keys_terraform_outputs_for_it(rendered):
    outputs = (REPO / "infra" / "terraform" / "aws" / "outputs.tf").read_text()
    block = re.search(r'output "configmap_data" \{.*?value = \{(.*?)\}', outputs, re.S).group(1)
    keys = set(re.findall(r"^\s*([A-Z_]+)\s*=", block, re.M))
    [configmap] = [d for d in rendered["serve"] if d["kind"] == "ConfigMap"]
    assert keys and keys <= set(configmap["data"]), keys - set(configmap["data"])
