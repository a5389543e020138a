#!/usr/bin/env python3
"""The diffusers side of scripts/device-check: StableDiffusionXLPipeline from a diffusers source
tree (--diffusers DIR, not installed: its src/ is put first on sys.path) on the same weights and
request as bench_gpu (random-weight SDXL folder, one prompt, CFG 5, Euler, seed 0), with diffusers'
default attention (PyTorch SDPA). Prints one markdown row per dtype in bench_gpu's columns (the
pipeline runs its stages in one call, so the per-stage columns are "-"), or one line starting
"skipped:" saying what is missing (transformers, a CUDA device, ...).

  diffusers_sdxl.py --diffusers DIR --model FOLDER [--dtypes fp16,bf16] [--size 1024] [--steps 30]
                    [--warmup-steps 2] [--device cuda]
"""
import argparse
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--diffusers", required=True, help="a diffusers source tree (with src/diffusers)")
    p.add_argument("--model", required=True, help="a diffusers SDXL pipeline folder")
    p.add_argument("--dtypes", default="fp16,bf16")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--device", default="cuda")
    return p.parse_args()


def import_pipeline(tree):
    sys.path.insert(0, tree.rstrip("/") + "/src")
    sys.path.insert(1, tree)
    import torch  # noqa: F401  (the machine's PyTorch)
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    return StableDiffusionXLPipeline, EulerDiscreteScheduler


def generate(pipe, torch, args, steps):
    """Seconds for the whole call, and denoise it/s from the ends of the first and last steps (the
    device is waited for at those two steps only)."""
    generator = torch.Generator("cpu").manual_seed(0)  # as sdxl-host: noise drawn on the CPU
    marks = []

    def on_step_end(pipeline, step, timestep, tensors):
        if step in (0, steps - 1):
            torch.cuda.synchronize()
            marks.append(time.perf_counter())
        return tensors

    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        pipe(prompt="a photo of an astronaut riding a horse on the moon", negative_prompt="blurry",
             num_inference_steps=steps, guidance_scale=5.0, width=args.size, height=args.size,
             generator=generator, output_type="np", callback_on_step_end=on_step_end)
    torch.cuda.synchronize()
    total = time.perf_counter() - start
    it_s = (steps - 1) / (marks[-1] - marks[0]) if len(marks) == 2 and marks[-1] > marks[0] else float("nan")
    return total, it_s


def main():
    args = parse()
    try:
        pipeline_class, scheduler_class = import_pipeline(args.diffusers)
        import torch
    except Exception as error:  # what is missing is the result: say it and stop
        print(f"skipped: cannot import diffusers from {args.diffusers}: {type(error).__name__}: {error}")
        return 0
    if not torch.cuda.is_available():
        print("skipped: torch.cuda.is_available() is False")
        return 0
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    for name in args.dtypes.split(","):
        load_start = time.perf_counter()
        pipe = pipeline_class.from_pretrained(args.model, torch_dtype=dtypes[name])
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(args.device)
        generate(pipe, torch, args, args.warmup_steps)
        warm = time.perf_counter() - load_start
        torch.cuda.reset_peak_memory_stats()
        total, it_s = generate(pipe, torch, args, args.steps)
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"| diffusers | {name} | {args.size}x{args.size} | {args.steps} | {total:.2f} | {it_s:.2f} | "
              f"- | - | - | {peak:.2f} | {warm:.1f} |", flush=True)
        del pipe
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
