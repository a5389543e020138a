#!/usr/bin/env python3
"""Host part of the preprocessor third-party proof: sdxl-host loads examples/example_preprocessor
beside the real sdxl, schedulers and controlnet plugins, lists `example_threshold` with its
options in `capabilities`, refuses a bad option naming it, previews the preprocessor with the
`preprocess` message, and GENERATES with it in a ControlNet unit (the goldens' tiny SDXL and
ControlNet). The generation with the preprocessor must equal, pixel for pixel, the generation
whose control image is the preview (so the plugin's output is what the ControlNet saw), and
differ from the generation with the unprocessed photo (so it mattered).

usage: example_preprocessor_check.py SDXL_HOST PLUGIN_DIR SHARED WORK_DIR PNG_COMPARE"""
import base64
import json
import os
import shutil
import subprocess
import sys


def fail(message):
    print("example_preprocessor_check: " + message, file=sys.stderr)
    sys.exit(1)


def b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def serve(host, config_file, messages):
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    done = subprocess.run([host, "serve", "--config", config_file, "--stdio"], input=stdin,
                          capture_output=True, text=True, timeout=300)
    responses = {}
    for line in done.stdout.splitlines():
        if line.strip():
            message = json.loads(line)
            if message.get("message_type") == "response":
                responses[message.get("request_id")] = message
    for m in messages:
        if m["request_id"] not in responses:
            fail("no response to '%s' (exit %d)\nstderr:\n%s" % (m["request_id"], done.returncode, done.stderr[-3000:]))
    return responses


def generation(request_id, unit):
    return {"message_type": "inference_request", "request_id": request_id, "data": {
        "prompt": "a photo of a cat", "models": {"base": "tiny-golden"},
        "hyperparameters": {"num_inference_steps": 3, "guidance_scale": 5.0, "seed": 0},
        "dimensions": {"width": 64, "height": 64}, "scheduler": "EulerDiscreteScheduler",
        "controlnet": {"enabled": True, "units": [dict({"model": "tiny", "conditioning_scale": 1.0}, **unit)]},
        "output": {"format": "png", "save_path": request_id + ".png"}}}


def main():
    host, plugin_dir, shared, work, compare = sys.argv[1:6]
    models = os.path.join(work, "models")
    shutil.copytree(os.path.join(shared, "goldens/models/tiny_sdxl"), os.path.join(models, "checkpoints/tiny-golden"))
    shutil.copytree(os.path.join(shared, "goldens/controlnet/controlnet_tiny"), os.path.join(models, "controlnet/tiny"))
    outputs = os.path.join(work, "outputs")
    config_file = os.path.join(work, "host.json")
    with open(config_file, "w") as f:
        json.dump({"plugins": {"dir": plugin_dir}, "models_root": models, "output_root": outputs,
                   "limits": {"min_width": 8, "min_height": 8}, "threads": 1, "log_level": "warn"}, f)
    photo = b64(os.path.join(shared, "goldens/controlnet/control_image_2.png"))
    options = {"name": "example_threshold", "threshold": 100}

    first = serve(host, config_file, [
        {"message_type": "capabilities", "request_id": "caps"},
        {"message_type": "preprocess", "request_id": "bad", "data": {
            "preprocessor": {"name": "example_threshold", "threshold": 300}, "image": photo}},
        {"message_type": "preprocess", "request_id": "preview", "data": {"preprocessor": options, "image": photo}},
        generation("with_plugin", {"image": photo, "preprocessor": options}),
        generation("raw_photo", {"image": photo})])

    caps = first["caps"]["data"]
    plugins = {p.get("name"): p for p in caps.get("plugins", [])}
    if plugins.get("example_preprocessor", {}).get("state") != "loaded":
        fail("example_preprocessor is not loaded: %s" % json.dumps(caps.get("plugins"))[:2000])
    details = {p["name"]: p for p in caps.get("preprocessor_details", [])}
    example = details.get("example_threshold")
    if not example or [o["name"] for o in example["options"]] != ["threshold", "invert"]:
        fail("example_threshold and its options missing from capabilities: %s" % json.dumps(details)[:2000])
    print("capabilities: example_threshold listed with options threshold, invert")

    bad = first["bad"]
    if bad.get("success") or bad.get("error_code") != "VALIDATION_ERROR" or bad.get("field") != "data.preprocessor.threshold":
        fail("threshold 300 was not refused naming data.preprocessor.threshold: %s" % json.dumps(bad)[:1000])
    print("preprocess with threshold 300: VALIDATION_ERROR data.preprocessor.threshold")

    preview = first["preview"]
    if not preview.get("success") or preview["data"].get("options", {}).get("invert") is not False:
        fail("preview failed: %s" % json.dumps(preview)[:1000])
    for name in ("with_plugin", "raw_photo"):
        response = first[name]
        if not response.get("success") or "controlnet_prepare" not in response["data"].get("stages", []):
            fail("generation '%s' failed or ran no ControlNet: %s" % (name, json.dumps(response)[:1000]))

    second = serve(host, config_file, [generation("with_preview", {"image": preview["data"]["image"]})])
    if not second["with_preview"].get("success"):
        fail("generation with the preview as control image failed: %s" % json.dumps(second["with_preview"])[:1000])

    png = lambda name: os.path.join(outputs, name + ".png")
    same = subprocess.run([compare, png("with_plugin"), png("with_preview"), "0"], capture_output=True, text=True)
    if same.returncode != 0:
        fail("the generation with the preprocessor differs from the one with its preview: " + same.stdout)
    differs = subprocess.run([compare, png("with_plugin"), png("raw_photo"), "0"], capture_output=True, text=True)
    if differs.returncode == 0:
        fail("the preprocessor changed nothing: the generation equals the one with the raw photo")
    print("generation with example_threshold == generation with its preview; != with the raw photo (%s)"
          % differs.stdout.strip())


if __name__ == "__main__":
    main()
