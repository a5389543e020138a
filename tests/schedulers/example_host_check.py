#!/usr/bin/env python3
"""Host part of the third-party proof: sdxl-host loads examples/example_scheduler, the real
sdxl plugin and the schedulers plugin it requires from one plugin directory, lists the example in `capabilities`, takes it by name in a
dry_run, refuses an unknown scheduler name, and GENERATES an image with it through the sdxl
plugin and the tiny model (MODELS_ROOT/checkpoints/tiny-sdxl): the response succeeds, the PNG
exists and its metadata names the example scheduler.

usage: example_host_check.py SDXL_HOST PLUGIN_DIR MODELS_ROOT WORK_DIR
Exit 0 when every check passes; prints what it checked."""
import json
import os
import subprocess
import sys


def fail(message):
    print("example_host_check: " + message, file=sys.stderr)
    sys.exit(1)


def main():
    host, plugin_dir, models_root, work = sys.argv[1:5]
    outputs = os.path.join(work, "outputs")
    os.makedirs(outputs, exist_ok=True)
    for library in ("example_scheduler.so", "sdxl.so", "schedulers.so"):
        if not os.path.exists(os.path.join(plugin_dir, library)):
            fail("%s is missing from %s" % (library, plugin_dir))
    config_file = os.path.join(work, "host.json")
    with open(config_file, "w") as f:
        json.dump({"plugins": {"dir": plugin_dir}, "models_root": models_root, "output_root": outputs,
                   "threads": 1, "log_level": "warn"}, f)
    base = {"prompt": "a lighthouse", "scheduler": "Example Euler", "models": {"base": "tiny-sdxl"},
            "hyperparameters": {"num_inference_steps": 3, "guidance_scale": 5.0, "seed": 7},
            "dimensions": {"width": 64, "height": 64}}
    messages = [{"message_type": "capabilities", "request_id": "caps"},
                {"message_type": "inference_request", "request_id": "dry", "data": dict(base, dry_run=True)},
                {"message_type": "inference_request", "request_id": "unknown",
                 "data": dict(base, scheduler="No Such Scheduler", dry_run=True)},
                {"message_type": "inference_request", "request_id": "run",
                 "data": dict(base, output={"format": "png", "save_path": "example_euler.png"})}]
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
    if unknown.get("success") or unknown.get("error_code") != "VALIDATION_ERROR":
        fail("dry_run with an unknown scheduler was not refused: %s" % json.dumps(unknown)[:1000])
    print("dry_run with an unknown scheduler refused: VALIDATION_ERROR")

    run = responses["run"]
    if not run.get("success"):
        fail("sdxl generation with scheduler 'Example Euler' failed: %s" % json.dumps(run)[:1000])
    if "denoise" not in run["data"].get("stages", []):
        fail("the generation ran no denoise stage: %s" % run["data"].get("stages"))
    images = run["data"].get("generated_images", [])
    if len(images) != 1:
        fail("expected one generated image: %s" % json.dumps(images)[:1000])
    image = images[0]
    path = image.get("image_path", "")
    if not path or not os.path.isfile(path) or os.path.getsize(path) == 0:
        fail("the generated image was not written: '%s'" % path)
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            fail("%s is not a PNG" % path)
    metadata = image.get("metadata", {})
    if metadata.get("scheduler") != "Example Euler":
        fail("generated image metadata does not name the example scheduler: %s" % json.dumps(metadata)[:1000])
    if metadata.get("model_info", {}).get("base_model") != "tiny-sdxl":
        fail("generated image metadata does not name the tiny model: %s" % json.dumps(metadata)[:1000])
    print("sdxl + tiny-sdxl: %dx%d image written to %s, metadata.scheduler = 'Example Euler'"
          % (image.get("width"), image.get("height"), path))


if __name__ == "__main__":
    main()
