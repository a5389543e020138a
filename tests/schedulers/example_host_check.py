#!/usr/bin/env python3
"""Host part of the third-party proof: sdxl-host loads examples/example_scheduler from a plugin
directory, lists it in `capabilities`, and takes it by name in requests (dry_run, and a
test_generate run when the test-only generator plugin is in the directory).

usage: example_host_check.py SDXL_HOST PLUGIN_DIR WORK_DIR
Exit 0 when every check passes; prints what it checked."""
import json
import os
import subprocess
import sys


def fail(message):
    print("example_host_check: " + message, file=sys.stderr)
    sys.exit(1)


def main():
    host, plugin_dir, work = sys.argv[1:4]
    os.makedirs(os.path.join(work, "models"), exist_ok=True)
    os.makedirs(os.path.join(work, "outputs"), exist_ok=True)
    config_file = os.path.join(work, "host.json")
    with open(config_file, "w") as f:
        json.dump({"plugins": {"dir": plugin_dir}, "models_root": os.path.join(work, "models"),
                   "output_root": os.path.join(work, "outputs"), "log_level": "warn"}, f)
    has_generator = os.path.exists(os.path.join(plugin_dir, "test_generate.so"))
    base = {"prompt": "a lighthouse", "scheduler": "Example Euler",
            "hyperparameters": {"num_inference_steps": 3, "seed": 7},
            "dimensions": {"width": 64, "height": 64}}
    messages = [{"message_type": "capabilities", "request_id": "caps"},
                {"message_type": "inference_request", "request_id": "dry", "data": dict(base, dry_run=True)}]
    messages.append({"message_type": "inference_request", "request_id": "unknown",
                     "data": dict(base, scheduler="No Such Scheduler", dry_run=True)})
    if has_generator:
        messages.append({"message_type": "inference_request", "request_id": "run",
                         "data": dict(base, test={"step_ms": 1}, output={"format": "png"})})
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    done = subprocess.run([host, "serve", "--config", config_file, "--stdio"], input=stdin,
                          capture_output=True, text=True, timeout=180)
    responses = {}
    for line in done.stdout.splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        if message.get("message_type") == "response":
            responses[message.get("request_id")] = message
    for request_id in [m["request_id"] for m in messages]:
        if request_id not in responses:
            fail("no response to '%s' (exit %d)\nstderr:\n%s" % (request_id, done.returncode, done.stderr[-3000:]))

    caps = responses["caps"]
    if not caps.get("success"):
        fail("capabilities failed: %s" % json.dumps(caps)[:1000])
    data = caps["data"]
    plugins = {p.get("name"): p for p in data.get("plugins", [])}
    example = plugins.get("example_scheduler")
    if not example or example.get("state") != "loaded":
        fail("example_scheduler is not loaded: %s" % json.dumps(data.get("plugins"))[:2000])
    if "ExampleEulerScheduler" not in data.get("schedulers", []):
        fail("ExampleEulerScheduler missing from capabilities.schedulers: %s" % data.get("schedulers"))
    alias = data.get("scheduler_aliases", {}).get("example euler")
    if not alias or alias.get("class_name") != "ExampleEulerScheduler":
        fail("alias 'Example Euler' missing from capabilities.scheduler_aliases")
    print("capabilities: example_scheduler loaded, ExampleEulerScheduler + alias listed")

    dry = responses["dry"]
    if not dry.get("success"):
        fail("dry_run with scheduler 'Example Euler' failed: %s" % json.dumps(dry)[:1000])
    if dry["data"].get("normalized_request", {}).get("scheduler") != "Example Euler":
        fail("dry_run lost the scheduler name: %s" % json.dumps(dry["data"])[:1000])
    print("dry_run: accepted with scheduler 'Example Euler'")

    unknown = responses["unknown"]
    if unknown.get("success"):
        print("note: this host does not resolve data.scheduler before running (an unknown name passes dry_run)")
    else:
        print("dry_run with an unknown scheduler refused: %s" % unknown.get("error_code"))

    if has_generator:
        run = responses["run"]
        if not run.get("success"):
            fail("test_generate request with scheduler 'Example Euler' failed: %s" % json.dumps(run)[:1000])
        images = run["data"].get("generated_images", [])
        if not images or images[0].get("metadata", {}).get("scheduler") != "Example Euler":
            fail("generated image metadata does not name the scheduler: %s" % json.dumps(images)[:1000])
        print("test_generate: image generated, metadata.scheduler = 'Example Euler'")


if __name__ == "__main__":
    main()
