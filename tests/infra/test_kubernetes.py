"""The Kubernetes manifests: rendered by kustomize (kubectl's, offline), validated against the
Kubernetes 1.32 API schemas (kubernetes-validate, strict), and checked against the code they run:
every command line parses with the real command's own parser, every $(VAR) is defined, GPU pods
land on and tolerate the GPU node group terraform makes, the serving probes hit a real endpoint,
and every pod's NetworkPolicies let in what it serves and nothing else."""

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
        assert pod["automountServiceAccountToken"] is False  # no Kubernetes API calls; AWS via Pod Identity
        [container] = pod["containers"]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
        assert re.fullmatch(r"\S+\.dkr\.ecr\.\S+/eegfm:\S+", container["image"]), container["image"]
        assert container["imagePullPolicy"] == "Always"
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        # secrets reach a container as read-only files, never as environment variables
        assert not [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
        assert not [e for e in container.get("envFrom", []) if "secretRef" in e]


def _module_argv(words: list[str], module: str) -> list[str]:
    assert words[:3] == ["python", "-m", module], words
    return words[3:]


def test_command_lines_parse_with_the_commands_own_parsers(rendered):
    from torch.distributed.run import get_args_parser as torchrun_parser

    from eegfm.pipelines.job.preprocess import build_parser as preprocess_parser
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
    args, beam = preprocess_parser().parse_known_args(_module_argv(preprocess, "eegfm.pipelines.job.preprocess"))
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
    assert _module_argv(publish, "eegfm.serving.models") == [str(args.output), "s3://eegfm-models/runs/finetune"]

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

    docs = render("cluster")
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    [plugin] = [d for d in docs if d["kind"] == "DaemonSet"]
    assert plugin["metadata"]["namespace"] == "kube-system"
    pod = plugin["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == dict([GPU_LABEL])
    assert {"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    [mount] = pod["containers"][0]["volumeMounts"]
    assert mount["mountPath"] == "/var/lib/kubelet/device-plugins"
    assert re.fullmatch(r"\S+/k8s-device-plugin:v\d+\.\d+\.\d+", pod["containers"][0]["image"])  # pinned


def test_the_serving_probes_and_ports_match_the_server(rendered, finetuned, monkeypatch, tmp_path):
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
    # the API keys are the Secret's key "keys", a file of one key per line that --api_keys_file reads
    [keys_path] = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--api_keys_file=")]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    [(name, secret)] = [(v["name"], v["secret"]) for v in pod["volumes"] if "secret" in v]
    assert secret["secretName"] == "eegfm-serve-api-keys" and mounts[name]["readOnly"] is True
    assert keys_path in {
        f"{mounts[name]['mountPath']}/{item['path']}" for item in secret["items"] if item["key"] == "keys"
    }
    # every probe path answers 200 without a key
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"{API_KEY}\nsecond-key-0123456789abcdef\n")  # as the docs have the Secret made
    monkeypatch.delenv("EEGFM_API_KEYS", raising=False)
    with serving(["--model", str(finetuned), "--api_keys_file", str(keys_file)]) as server:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert server.request("GET", container[probe]["httpGet"]["path"])[0] == 200, probe
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert server.request("GET", annotations["prometheus.io/path"])[0] == 200
        assert int(annotations["prometheus.io/port"]) == port
        # and each line of the Secret's file is a key
        for key, status in ((API_KEY, 200), ("second-key-0123456789abcdef", 200), ("no-such-key-0123456789", 401)):
            assert server.request("GET", "/v1/model", headers={"Authorization": f"Bearer {key}"})[0] == status


def test_the_tls_overlay_serves_https_from_its_secret(finetuned, tmp_path):
    """infra/kubernetes/serve-tls: the arguments name the Secret's files where it is mounted, every
    probe and the scraper ask for HTTPS, and the server started so answers each probe over TLS."""
    import http.client
    import ssl

    import kubernetes_validate

    from tests.serving.serve_helpers import self_signed_certificate, serving

    docs = render("serve-tls")
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    deployment, pod = _pod(docs)
    [container] = pod["containers"]
    tls_args = dict(a.split("=", 1) for a in container["args"] if a.startswith("--tls_"))
    [volume] = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "eegfm-serve-tls"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    folder = mount["mountPath"]
    assert tls_args == {"--tls_certfile": f"{folder}/tls.crt", "--tls_keyfile": f"{folder}/tls.key"}
    assert mount["readOnly"] is True  # tls.crt and tls.key: the keys of a kubernetes.io/tls Secret
    probes = [container[p]["httpGet"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert all(probe["scheme"] == "HTTPS" for probe in probes)
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scheme"] == "https"
    cert, key = self_signed_certificate(tmp_path, "tls")  # stands in for the Secret's files
    with serving(["--model", str(finetuned), "--no-auth", "--tls_certfile", cert, "--tls_keyfile", key]) as server:
        trusting = ssl.create_default_context(cafile=cert)
        for probe in probes:
            connection = http.client.HTTPSConnection(server.host, server.port, context=trusting, timeout=30)
            connection.request("GET", probe["path"])
            assert connection.getresponse().status == 200, probe
            connection.close()


def test_the_configmap_has_the_keys_terraform_outputs_for_it(rendered):
    outputs = (REPO / "infra" / "terraform" / "aws" / "outputs.tf").read_text()
    block = re.search(r'output "configmap_data" \{.*?value = \{(.*?)\}', outputs, re.S).group(1)
    keys = set(re.findall(r"^\s*([A-Z_]+)\s*=", block, re.M))
    [configmap] = [d for d in rendered["serve"] if d["kind"] == "ConfigMap"]
    assert keys and keys <= set(configmap["data"]), keys - set(configmap["data"])


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions; {} selects all) matches."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    tests = {
        "In": lambda key, values: labels.get(key) in values,
        "NotIn": lambda key, values: labels.get(key) not in values,
        "Exists": lambda key, values: key in labels,
        "DoesNotExist": lambda key, values: key not in labels,
    }
    return all(tests[e["operator"]](e["key"], e.get("values", [])) for e in selector.get("matchExpressions", []))


def _workload_pods(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(namespace, pod labels, pod spec) of every pod template: Jobs, Deployments, DaemonSets, and
    each replica type of a PyTorchJob."""
    pods = []
    for doc in docs:
        if doc["kind"] in ("Job", "Deployment", "DaemonSet"):
            templates = [doc["spec"]["template"]]
        elif doc["kind"] == "PyTorchJob":
            templates = [replica["template"] for replica in doc["spec"]["pytorchReplicaSpecs"].values()]
        else:
            continue
        pods += [(doc["metadata"]["namespace"], t["metadata"]["labels"], t["spec"]) for t in templates]
    return pods


def _ingress_rules(docs: list[dict], namespace: str, labels: dict[str, str]) -> list[dict] | None:
    """The ingress rules the NetworkPolicies selecting this pod admit through (a union); None when
    no policy isolates it for ingress (everything comes in)."""
    policies = [
        d["spec"]
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["metadata"]["namespace"] == namespace
        and _selects(d["spec"]["podSelector"], labels)
        and "Ingress" in d["spec"].get("policyTypes", ["Ingress"])
    ]
    return None if not policies else [rule for policy in policies for rule in policy.get("ingress", [])]


def _admits(rule: dict, port: int, names: set[str], peer: dict[str, str] | None = None) -> bool:
    """Whether a rule lets TCP ``port`` (a container port known by ``names``) in, from any source or
    (``peer``) from a pod of the same namespace with those labels."""
    ports = rule.get("ports") or [{}]
    if not any(p.get("protocol", "TCP") == "TCP" and p.get("port", port) in ({port} | names) for p in ports):
        return False
    sources = rule.get("from") or []
    if not sources:
        return True
    return peer is not None and any(set(s) == {"podSelector"} and _selects(s["podSelector"], peer) for s in sources)


def test_every_pod_has_network_policies_that_let_in_what_it_serves_and_nothing_else(rendered):
    overlays = {f"pretrain-elastic/{o}": render(f"pretrain-elastic/{o}") for o in ("gpu", "cpu")}
    for workload, docs in {**rendered, **overlays, "cluster": render("cluster")}.items():
        pods = _workload_pods(docs)
        assert pods, workload
        for namespace, labels, pod in pods:
            rules = _ingress_rules(docs, namespace, labels)
            assert rules is not None, f"{workload}: no NetworkPolicy selects its pods"
            ports = [p for c in pod["containers"] for p in c.get("ports", [])]
            if workload == "serve":  # the HTTP port, from anywhere (an ingress, probes, Prometheus)
                [http] = ports
                assert any(_admits(r, http["containerPort"], {http["name"]}) for r in rules), workload
                assert not any(_admits(r, http["containerPort"] + 1, set()) for r in rules), workload
            elif workload.startswith("pretrain-elastic/"):  # its own pods: rendezvous, then NCCL/gloo
                for port in (23456, 29500, 41234):  # the operator's rendezvous port, then any
                    assert any(_admits(r, port, set(), peer=labels) for r in rules), (workload, port)
                assert not any(_admits(r, 23456, set(), peer={"app.kubernetes.io/name": "other"}) for r in rules)
            else:  # batch jobs and the device plugin serve nothing
                assert rules == [], workload
            if namespace == "eegfm":  # S3, the Pod Identity agent, DNS: egress stays open
                egress = [
                    d["spec"]
                    for d in docs
                    if d["kind"] == "NetworkPolicy"
                    and _selects(d["spec"]["podSelector"], labels)
                    and "Egress" in d["spec"].get("policyTypes", [])
                ]
                assert all({} in policy.get("egress", []) for policy in egress), workload
