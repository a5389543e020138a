// The C# service's request model (the seed design's EnhancedSDXLRequest). Plain mutable classes
// with sensible defaults; EnhancedRequestTransformer maps them onto the host's wire `data` object.
// Thread-safety: none; build a request on one thread, then hand it to the client.

using System.Collections.Generic;

namespace SdxlHost.Client
{
    /// <summary>One SDXL generation as the C# service describes it.</summary>
    public sealed class EnhancedSDXLRequest
    {
        /// <summary>Prompts, LoRAs and ControlNets.</summary>
        public Conditioning Conditioning { get; set; } = new Conditioning();

        /// <summary>Base, refiner and VAE model names.</summary>
        public ModelSelection Model { get; set; } = new ModelSelection();

        /// <summary>Scheduler type, step count and guidance.</summary>
        public SchedulerSettings Scheduler { get; set; } = new SchedulerSettings();

        /// <summary>Seed, size, strength, batch size and the img2img source.</summary>
        public Hyperparameters Hyperparameters { get; set; } = new Hyperparameters();

        /// <summary>Image format, quality and where to save.</summary>
        public OutputSettings Output { get; set; } = new OutputSettings();

        /// <summary>Upscaling after generation; null: none.</summary>
        public PostProcessing PostProcessing { get; set; }

        /// <summary>Queue priority, timeout and tags.</summary>
        public RequestMetadata Metadata { get; set; } = new RequestMetadata();

        /// <summary>When true the host plans the request and returns the plan without generating.</summary>
        public bool DryRun { get; set; }

        /// <summary>
        /// Extra fields merged into the wire's <c>data</c> object as they are (plugin-specific options,
        /// e.g. <c>{"test": {...}}</c> for a test plugin). A key here replaces the mapped one.
        /// </summary>
        public IDictionary<string, object> AdditionalData { get; set; } = new Dictionary<string, object>();
    }

    /// <summary>What to draw: prompts and the conditioning add-ons.</summary>
    public sealed class Conditioning
    {
        /// <summary>The prompt (required by the host).</summary>
        public string Prompt { get; set; }

        /// <summary>The negative prompt; null: none.</summary>
        public string NegativePrompt { get; set; }

        /// <summary>Prompt for the second text encoder; null: same as <see cref="Prompt"/>.</summary>
        public string Prompt2 { get; set; }

        /// <summary>Negative prompt for the second text encoder; null: same as <see cref="NegativePrompt"/>.</summary>
        public string NegativePrompt2 { get; set; }

        /// <summary>LoRAs to apply, in order; empty: none.</summary>
        public List<LoRAConfig> LoRAs { get; set; } = new List<LoRAConfig>();

        /// <summary>ControlNets to apply; empty: none.</summary>
        public List<ControlNetConfig> ControlNets { get; set; } = new List<ControlNetConfig>();
    }

    /// <summary>One LoRA: a model under the host's models_root/loras and its weight.</summary>
    public sealed class LoRAConfig
    {
        /// <summary>The LoRA's name or path; the wire carries only its name (file name without .safetensors).</summary>
        public string ModelPath { get; set; }

        /// <summary>Multiplier of the LoRA delta (1.0 = as trained).</summary>
        public double Weight { get; set; } = 1.0;
    }

    /// <summary>One ControlNet unit.</summary>
    public sealed class ControlNetConfig
    {
        /// <summary>Control type, e.g. "canny", "depth".</summary>
        public string Type { get; set; }

        /// <summary>ControlNet model name under models_root/controlnet; null: the host's default for <see cref="Type"/>.</summary>
        public string Model { get; set; }

        /// <summary>The control image: base64 PNG/JPEG or a path the host can read.</summary>
        public string ControlImage { get; set; }

        /// <summary>Scale of the ControlNet residuals.</summary>
        public double ConditioningScale { get; set; } = 1.0;

        /// <summary>Fraction of the steps where the unit starts acting; null: host default (0).</summary>
        public double? GuidanceStart { get; set; }

        /// <summary>Fraction of the steps where the unit stops acting; null: host default (1).</summary>
        public double? GuidanceEnd { get; set; }

        /// <summary>Preprocessor options (e.g. {"type":"canny","low_threshold":100}); null: none.</summary>
        public IDictionary<string, object> Preprocessor { get; set; }
    }

    /// <summary>Names of the models under the host's models_root.</summary>
    public sealed class ModelSelection
    {
        /// <summary>Base checkpoint name (models_root/checkpoints/NAME).</summary>
        public string Base { get; set; }

        /// <summary>Refiner checkpoint name; null: no refiner.</summary>
        public string Refiner { get; set; }

        /// <summary>VAE name (models_root/vae/NAME); null: the checkpoint's own.</summary>
        public string Vae { get; set; }
    }

    /// <summary>Denoising schedule.</summary>
    public sealed class SchedulerSettings
    {
        /// <summary>diffusers class name ("EulerDiscreteScheduler") or a common alias ("Euler a", "DPM++ 2M").</summary>
        public string Type { get; set; } = "EulerDiscreteScheduler";

        /// <summary>Number of denoising steps.</summary>
        public int Steps { get; set; } = 30;

        /// <summary>Classifier-free guidance scale.</summary>
        public double GuidanceScale { get; set; } = 7.5;
    }

    /// <summary>Seed, size and batch.</summary>
    public sealed class Hyperparameters
    {
        /// <summary>Random seed; null: the host picks one (reported in each image's metadata).</summary>
        public long? Seed { get; set; }

        /// <summary>img2img strength in (0, 1]; null: 0.8.</summary>
        public double? Strength { get; set; }

        /// <summary>Image width in pixels (a multiple of 8).</summary>
        public int Width { get; set; } = 1024;

        /// <summary>Image height in pixels (a multiple of 8).</summary>
        public int Height { get; set; } = 1024;

        /// <summary>Images per request; null: 1. Image i uses seed + i.</summary>
        public int? BatchSize { get; set; }

        /// <summary>img2img source (base64 PNG/JPEG or a path); null: text-to-image.</summary>
        public string InitImage { get; set; }
    }

    /// <summary>How results come back.</summary>
    public sealed class OutputSettings
    {
        /// <summary>"png", "jpeg" or "webp" (any case); null: png.</summary>
        public string Format { get; set; }

        /// <summary>1..100 for jpeg/webp; null: 95.</summary>
        public int? Quality { get; set; }

        /// <summary>Folder relative to the host's output_root; null: not saved (images come back as base64).</summary>
        public string SavePath { get; set; }

        /// <summary>Also return the encoded image bytes (base64) when saving.</summary>
        public bool ReturnBase64 { get; set; }
    }

    /// <summary>Steps after generation.</summary>
    public sealed class PostProcessing
    {
        /// <summary>Upscaling; null or disabled: none.</summary>
        public UpscaleSettings Upscale { get; set; }
    }

    /// <summary>Upscaling options.</summary>
    public sealed class UpscaleSettings
    {
        /// <summary>Whether to upscale.</summary>
        public bool Enabled { get; set; } = true;

        /// <summary>Scale factor (e.g. 2 or 4).</summary>
        public double Factor { get; set; } = 2.0;

        /// <summary>Upscaler model name under models_root/upscalers; null: the host's default method.</summary>
        public string Model { get; set; }
    }

    /// <summary>Scheduling of the job on the host.</summary>
    public sealed class RequestMetadata
    {
        /// <summary>"high", "normal" or "low".</summary>
        public string Priority { get; set; } = "normal";

        /// <summary>Seconds the job may spend queued and running before the host answers TIMEOUT.</summary>
        public double TimeoutSeconds { get; set; } = 300;

        /// <summary>Free-form tags echoed in logs.</summary>
        public List<string> Tags { get; set; } = new List<string> { "enhanced_sdxl", "c_sharp_service" };
    }
}
