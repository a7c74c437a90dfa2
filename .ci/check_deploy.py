"""Checks the Kubernetes manifests, the Dockerfile and the Grafana dashboard
carry what operating fanout relies on. Run by .ci/check-deploy."""

import glob
import json
import re
import subprocess
import sys
import tomllib

import yaml

fanout, tmp = sys.argv[1], sys.argv[2]
problems = []


def need(cond, what):
    if not cond:
        problems.append(what)


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", text)
    if not m:
        problems.append(f"cannot read duration {text!r}")
        return 0
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": n * 60}[unit]


docs = {}
for path in sorted(glob.glob("deploy/kubernetes/*.yaml")):
    for doc in yaml.safe_load_all(open(path)):
        need(isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc, f"{path}: no kind/apiVersion")
        docs[doc["kind"]] = doc

for kind in ["Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor"]:
    need(kind in docs, f"no {kind} in deploy/kubernetes")
if problems:
    sys.exit("\n".join(problems))

# The ConfigMap's config.toml must be a valid fanout configuration.
toml_text = docs["ConfigMap"]["data"]["config.toml"]
with open(f"{tmp}/config.toml", "w") as f:
    f.write(toml_text)
r = subprocess.run([fanout, "--config", f"{tmp}/config.toml", "check-config"], capture_output=True, text=True)
need(r.returncode == 0, f"fanout check-config refuses the ConfigMap's config.toml: {r.stderr}")
config = tomllib.loads(toml_text)
server = config.get("server", {})
drain = seconds(server.get("shutdown_timeout", "10s")) + seconds(server.get("drain_delay", "0s"))

pod = docs["Deployment"]["spec"]["template"]["spec"]
c = pod["containers"][0]
pre_stop = c.get("lifecycle", {}).get("preStop", {})
pre_stop_s = pre_stop.get("sleep", {}).get("seconds", 0)
need(pre_stop, "Deployment: no preStop hook")
grace = pod.get("terminationGracePeriodSeconds", 30)
need(grace > pre_stop_s + drain, f"terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop_s} s + drain {drain} s")
need(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness probe must GET /healthz")
need(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness probe must GET /readyz")
resources = c.get("resources", {})
need({"cpu", "memory"} <= set(resources.get("requests", {})), "resources.requests needs cpu and memory")
need("memory" in resources.get("limits", {}), "resources.limits needs memory")
sc = c.get("securityContext", {})
need(pod.get("securityContext", {}).get("runAsNonRoot") is True, "pod must set runAsNonRoot: true")
need(sc.get("readOnlyRootFilesystem") is True, "container must set readOnlyRootFilesystem: true")
need(sc.get("allowPrivilegeEscalation") is False, "container must set allowPrivilegeEscalation: false")
ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
metrics_listen = config.get("metrics", {}).get("listen", "")
if metrics_listen:
    need(ports.get("metrics") == int(metrics_listen.rsplit(":", 1)[1]), "container port `metrics` must match [metrics] listen")
need(ports.get("http") == int(server.get("listen", "0:8080").rsplit(":", 1)[1]), "container port `http` must match server.listen")
svc_ports = {p["name"] for p in docs["Service"]["spec"]["ports"]}
for ep in docs["ServiceMonitor"]["spec"]["endpoints"]:
    need(ep["port"] in svc_ports, f"ServiceMonitor port {ep['port']} is not a Service port")
    need(ep.get("path", "/metrics") == "/metrics", "ServiceMonitor must scrape /metrics")
labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
for kind in ["Service", "PodDisruptionBudget"]:
    sel = docs[kind]["spec"]["selector"]
    sel = sel.get("matchLabels", sel)
    need(all(labels.get(k) == v for k, v in sel.items()), f"{kind} selector does not match the pods")
need(docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"], "HPA must target the Deployment")

dockerfile = open("deploy/Dockerfile").read()
need(len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2, "Dockerfile must be multi-stage")
user = re.findall(r"^USER (\S+)", dockerfile, re.M)
need(user and not user[-1].startswith(("0", "root")), "Dockerfile must end as a non-root USER")

# Every fanout_* metric the dashboard queries must be one the broker registers.
exported = set(re.findall(r'"(fanout_[a-z_]+)"', open("src/metrics.rs").read()))
dash = json.load(open("deploy/grafana/fanout-dashboard.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
for name in set(re.findall(r"fanout_[a-z_]+", " ".join(exprs))):
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    need(name in exported or base in exported, f"dashboard uses {name}, which the broker does not export")
for required in ["fanout_connections", "fanout_messages_published_total", "fanout_messages_delivered_total",
                 "fanout_messages_dropped_total", "fanout_send_queue_depth", "fanout_delivery_latency_seconds"]:
    need(any(required in e for e in exprs), f"dashboard has no panel on {required}")

if problems:
    sys.exit("deploy check failed:\n  " + "\n  ".join(problems))
print(f"deploy files: {len(docs)} manifests, Dockerfile and {len(dash['panels'])} dashboard panels check out")
