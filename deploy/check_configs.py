#!/usr/bin/env python3
"""Runs `cadre config check` for every cadre process that deploy/ starts, the way it starts it.

Called by deploy/validate.sh. Inputs are what the real tools produced, not this script's guess:
- `docker compose config --format json` (compose's own interpolation and normalisation),
- `helm template` output (the chart rendered by helm; several renders may be given),
- deploy/Dockerfile's ENV (the image defaults every container starts with).
Each process gets: image ENV < the service's/container's environment < its `serve` flags
(mapped to their CADRE_* equivalents, as `serve` applies them on top of file and environment).
Every *.toml under deploy/ is also checked on its own. Needs PyYAML.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

FAILED = []
PASSED = []


def dockerfile_env(path):
    text = open(path).read()
    runtime = text.split("AS runtime", 1)[1].replace("\\\n", " ")
    env = {}
    for line in runtime.splitlines():
        line = line.strip()
        if line.startswith("ENV "):
            for pair in line[4:].split():
                k, v = pair.split("=", 1)
                env[k] = v
    return env


def serve_flags(args):
    """(config path, env equivalents) of `serve` flags; unknown flags are an error."""
    config, env, sups = None, {}, []
    it = iter(args)
    for flag in it:
        if flag in ("--config", "-c"):
            config = next(it)
        elif flag == "--role":
            env["CADRE_NODE__ROLE"] = next(it)
        elif flag == "--supervisor":
            sups.append(next(it))
        elif flag == "--grpc-addr":
            env["CADRE_SERVER__GRPC_ADDR"] = next(it)
        elif flag == "--http-addr":
            env["CADRE_SERVER__HTTP_ADDR"] = next(it)
        elif flag == "--log-json":
            env["CADRE_LOG__JSON"] = "true"
        else:
            raise SystemExit(f"unknown serve flag {flag!r}: teach check_configs.py what it sets")
    if sups:
        env["CADRE_NODE__SUPERVISORS"] = "[" + ",".join(sups) + "]"
    return config, env


def check(cadre, name, config, env, expect=None):
    """Runs `cadre config check CONFIG` with exactly `env` as CADRE_* environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CADRE_") and k != "RUST_LOG"}
    base.update(env)
    with tempfile.TemporaryDirectory() as cwd:
        p = subprocess.run([cadre, "config", "check", config], env=base, cwd=cwd,
                           capture_output=True, text=True)
    if p.returncode != 0:
        FAILED.append(name)
        print(f"FAIL {name}: cadre config check {config}\n  env: {env}\n{p.stdout}{p.stderr}")
        return
    summary = ""
    m = re.search(r'^role = "(\w+)"', p.stdout, re.M)
    s = re.search(r"^supervisors = (\[.*\])", p.stdout, re.M)
    if m:
        summary = f"role={m.group(1)} supervisors={s.group(1) if s else '[]'}"
    for needle in expect or []:
        if needle not in p.stdout:
            FAILED.append(name)
            print(f"FAIL {name}: effective config lacks {needle!r}\n{p.stdout}")
            return
    PASSED.append(name)
    print(f"ok   {name}: {summary}")


def compose_processes(compose_json, image_env):
    doc = json.load(open(compose_json))
    for svc_name, svc in sorted(doc["services"].items()):
        cmd = svc.get("command") or []
        if not cmd or cmd[0] != "serve":
            continue
        config, flag_env = serve_flags(cmd[1:])
        source = next((v["source"] for v in svc.get("volumes", []) if v.get("target") == config), None)
        if source is None:
            raise SystemExit(f"compose service {svc_name}: {config} is not mounted")
        env = dict(image_env)
        env.update({k: str(v) for k, v in (svc.get("environment") or {}).items() if v is not None})
        env.update(flag_env)
        yield f"compose/{svc_name}", source, env


def helm_processes(rendered_path, image_env, workdir):
    docs = [d for d in yaml.safe_load_all(open(rendered_path)) if d]
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) for d in docs if d["kind"] == "Secret"}
    cms = [d for d in docs if d["kind"] == "ConfigMap" and "cadre.toml" in d.get("data", {})]
    if len(cms) != 1:
        raise SystemExit(f"{rendered_path}: expected one ConfigMap with cadre.toml, found {len(cms)}")
    toml_path = os.path.join(workdir, os.path.basename(rendered_path) + ".cadre.toml")
    open(toml_path, "w").write(cms[0]["data"]["cadre.toml"])
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        args = c["args"]
        if args[0] != "serve":
            raise SystemExit(f"{d['metadata']['name']}: args do not start with serve")
        config, flag_env = serve_flags(args[1:])
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == config)
        assert mount.get("subPath") == "cadre.toml", mount
        env = dict(image_env)
        for e in c.get("env", []):
            if "value" in e:
                v = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
            elif "secretKeyRef" in e["valueFrom"]:
                ref = e["valueFrom"]["secretKeyRef"]
                v = secrets[ref["name"]][ref["key"]]
            elif e["name"] == "POD_IP":
                v = "192.0.2.10"  # a documentation address: only a string in the config
            else:
                v = d["metadata"]["name"] + "-5d8f7c9b4-x2x7q"
            env[e["name"]] = v
        env.update(flag_env)
        yield f"helm[{os.path.basename(rendered_path)}]/{d['metadata']['name']}", toml_path, env


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cadre", required=True)
    ap.add_argument("--deploy-dir", required=True)
    ap.add_argument("--compose-json")
    ap.add_argument("--helm-rendered", action="append", default=[])
    a = ap.parse_args()
    a.cadre = os.path.abspath(a.cadre) if os.sep in a.cadre else a.cadre
    image_env = dockerfile_env(os.path.join(a.deploy_dir, "Dockerfile"))

    for root, _, files in os.walk(a.deploy_dir):
        for f in sorted(files):
            if f.endswith(".toml"):
                path = os.path.abspath(os.path.join(root, f))
                check(a.cadre, "file " + os.path.relpath(path, a.deploy_dir), path, {})

    distributed = ['nats_url = "nats://', 'grpc_addr = "0.0.0.0:50051"', 'http_addr = "0.0.0.0:8080"']
    if a.compose_json:
        for name, config, env in compose_processes(a.compose_json, image_env):
            role = env.get("CADRE_NODE__ROLE")
            expect = distributed + (['url = "postgres://'] if role == "orchestrator" else [])
            check(a.cadre, name, config, env, expect)
    with tempfile.TemporaryDirectory() as work:
        for rendered in a.helm_rendered:
            for name, config, env in helm_processes(rendered, image_env, work):
                role = env.get("CADRE_NODE__ROLE")
                expect = distributed + (['url = "postgres://'] if role == "orchestrator" else [])
                check(a.cadre, name, config, env, expect)

    print(f"configs: {len(PASSED)} passed, {len(FAILED)} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
