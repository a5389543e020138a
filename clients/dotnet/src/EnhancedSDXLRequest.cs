// The C# service's request model, with the seed design's names (EnhancedSDXLRequest,
// ConditioningConfiguration, LoRAConfiguration, ControlNetConfiguration, SDXLModelConfiguration,
// ...). Plain mutable classes; every nested configuration is created with its parent, so
// `request.Scheduler.Steps = 20` works on a new request. Defaults are the host's own, and nothing
// is sent that the host would warn about (strength only with an init image, upscale only when
// asked for). EnhancedRequestTransformer maps the model onto the wire's `data` object.
// Thread-safety: none; build a request on one thread, then hand it to the client.

using System.Collections.Generic;

namespace SdxlHost.Client
{
    /// <summary>One SDXL generation as the C# service describes it.</summary>
    public sealed class EnhancedSDXLRequest
    {
        /// <summary>The request id to send (echoed in progress and the response, and the id <c>CancelAsync</c> takes); null: the client makes one.</summary>
        public string RequestId { get; set; }

        /// <summary>Prompts, LoRAs and ControlNets.</summary>
        public ConditioningConfiguration Conditioning { get; set; } = new ConditioningConfiguration();

        /// <summary>Base, refiner and VAE model names.</summary>
        public SDXLModelConfiguration Model { get; set; } = new SDXLModelConfiguration();

        /// <summary>Scheduler type, step count, guidance and scheduler options.</summary>
        public SchedulerConfiguration Scheduler { get; set; } = new SchedulerConfiguration();

        /// <summary>Seed, size, batch, the image-to-image source and the refiner's settings.</summary>
        public HyperparameterConfiguration Hyperparameters { get; set; } = new HyperparameterConfiguration();

        /// <summary>Image format, quality, where to save, whether to return the bytes.</summary>
        public OutputConfiguration Output { get; set; } = new OutputConfiguration();

        /// <summary>Steps after generation (upscaling).</summary>
        public PostProcessingConfiguration PostProcessing { get; set; } = new PostProcessingConfiguration();

        /// <summary>Queue priority, timeout and tags.</summary>
        public MetadataConfiguration Metadata { get; set; } = new MetadataConfiguration();

        /// <summary>When true the host plans the request and returns the plan without generating.</summary>
        public bool DryRun { get; set; }

        /// <summary>
        /// Extra fields merged into the wire's <c>data</c> object as they are (plugin-specific options,
        /// e.g. <c>{"test": {...}}</c> for a test plugin). A key here replaces the mapped one.
        /// </summary>
        public IDictionary<string, object> AdditionalData { get; set; } = new Dictionary<string, object>();
    }

    /// <summary>What to draw: prompts and the conditioning add-ons (LoRA, ControlNet).</summary>
    public sealed class ConditioningConfiguration
    {
        /// <summary>The prompt (required by the host). A1111 tags <c>&lt;lora:NAME:WEIGHT&gt;</c> in it are honoured by the host.</summary>
        public string Prompt { get; set; }

        /// <summary>The negative prompt; null: none.</summary>
        public string NegativePrompt { get; set; }

        /// <summary>Prompt for the second text encoder; null: same as <see cref="Prompt"/>.</summary>
        public string Prompt2 { get; set; }

        /// <summary>Negative prompt for the second text encoder; null: same as <see cref="NegativePrompt"/>.</summary>
        public string NegativePrompt2 { get; set; }

        /// <summary>LoRAs to apply, in order, each with its weight; empty: none.</summary>
        public List<LoRAConfiguration> LoRAs { get; set; } = new List<LoRAConfiguration>();

        /// <summary>ControlNet units (MultiControlNet when several); empty: none.</summary>
        public List<ControlNetConfiguration> ControlNets { get; set; } = new List<ControlNetConfiguration>();

        /// <summary>ControlNet guess mode (the ControlNets see only the conditional half); applies to all units.</summary>
        public bool ControlNetGuessMode { get; set; }
    }

    /// <summary>One LoRA: a file under the host's models_root/loras and its weight.</summary>
    public sealed class LoRAConfiguration
    {
        /// <summary>
        /// The LoRA's name ("pixel-art-xl") or a path to it ("/models/loras/pixel-art-xl.safetensors");
        /// the wire carries only the name (<see cref="EnhancedRequestTransformer.ExtractLoRAName"/>), which the
        /// host resolves under its own models_root/loras.
        /// </summary>
        public string ModelPath { get; set; }

        /// <summary>Multiplier of the LoRA delta, -10..10 (1.0 = as trained, 0 = named but not applied).</summary>
        public double Weight { get; set; } = 1.0;

        /// <summary>
        /// Which expert of a base + refiner generation the LoRA patches: "base" (null: the host's default),
        /// "refiner" or "both". Sent as data.lora.models[i].apply_to.
        /// </summary>
        public string ApplyTo { get; set; }
    }

    /// <summary>One ControlNet unit.</summary>
    public sealed class ControlNetConfiguration
    {
        /// <summary>Control type ("canny"): looked up in the host's plugins.config.controlnet.types, else taken as the model name.</summary>
        public string Type { get; set; }

        /// <summary>ControlNet model name under models_root/controlnet; wins over <see cref="Type"/>; null: resolved from the type.</summary>
        public string Model { get; set; }

        /// <summary>The control image (PNG or JPEG): <see cref="ImageInput.FromFile"/>, <see cref="ImageInput.FromBytes"/>, or a base64 string.</summary>
        public ImageInput ControlImage { get; set; }

        /// <summary>Scale of the ControlNet residuals, 0..2.</summary>
        public double ConditioningScale { get; set; } = 1.0;

        /// <summary>Fraction of the steps where the unit starts acting; null: host default (0).</summary>
        public double? GuidanceStart { get; set; }

        /// <summary>Fraction of the steps where the unit stops acting; null: host default (1).</summary>
        public double? GuidanceEnd { get; set; }

        /// <summary>The preprocessor that turns <see cref="ControlImage"/> into the control map; null: the image is the map already.</summary>
        public PreprocessorConfiguration Preprocessor { get; set; }
    }

    /// <summary>A control-image preprocessor and its options (wire: <c>{"name": NAME, option: value, ...}</c>).</summary>
    public sealed class PreprocessorConfiguration
    {
        /// <summary>A preprocessor with no options set (the host's defaults apply).</summary>
        public PreprocessorConfiguration() { }

        /// <summary>The preprocessor <paramref name="name"/> with no options set.</summary>
        public PreprocessorConfiguration(string name) { Name = name; }

        /// <summary>Registered preprocessor name, e.g. "canny" (capabilities lists them with their options).</summary>
        public string Name { get; set; }

        /// <summary>Options by name (e.g. low_threshold = 100); the host checks names, types and ranges.</summary>
        public IDictionary<string, object> Options { get; set; } = new Dictionary<string, object>();

        /// <summary>The built-in Canny edge detector with its two hysteresis thresholds.</summary>
        public static PreprocessorConfiguration Canny(double lowThreshold = 100, double highThreshold = 200)
        {
            var canny = new PreprocessorConfiguration("canny");
            canny.Options["low_threshold"] = lowThreshold;
            canny.Options["high_threshold"] = highThreshold;
            return canny;
        }
    }

    /// <summary>Names of the models under the host's models_root.</summary>
    public sealed class SDXLModelConfiguration
    {
        /// <summary>Base checkpoint name (models_root/checkpoints/NAME, file or diffusers folder).</summary>
        public string Base { get; set; }

        /// <summary>Refiner checkpoint name; null: no refiner. The base stops at <see cref="HyperparameterConfiguration.DenoisingEnd"/> and the refiner finishes.</summary>
        public string Refiner { get; set; }

        /// <summary>VAE name (models_root/vae/NAME); null: the checkpoint's own.</summary>
        public string Vae { get; set; }
    }

    /// <summary>Denoising schedule.</summary>
    public sealed class SchedulerConfiguration
    {
        /// <summary>diffusers class name ("EulerDiscreteScheduler", "DDIM") or an A1111/ComfyUI name ("Euler a", "DPM++ 2M Karras").</summary>
        public string Type { get; set; } = "EulerDiscreteScheduler";

        /// <summary>Number of denoising steps.</summary>
        public int Steps { get; set; } = 30;

        /// <summary>Classifier-free guidance scale.</summary>
        public double GuidanceScale { get; set; } = 7.5;

        /// <summary>Scheduler options (wire: scheduler_options, e.g. use_karras_sigmas = true); empty: none.</summary>
        public IDictionary<string, object> Options { get; set; } = new Dictionary<string, object>();
    }

    /// <summary>Seed, size, batch, image-to-image and refiner settings.</summary>
    public sealed class HyperparameterConfiguration
    {
        /// <summary>Random seed; null: the host picks one (reported in each image's metadata).</summary>
        public long? Seed { get; set; }

        /// <summary>Image-to-image strength in (0, 1]; sent only with <see cref="InitImage"/> (default 0.8 then).</summary>
        public double? Strength { get; set; }

        /// <summary>Image width in pixels (a multiple of 8); null: the client's <see cref="GenerationDefaults.Width"/>, else the host's default (1024).</summary>
        public int? Width { get; set; }

        /// <summary>Image height in pixels (a multiple of 8); null: the client's <see cref="GenerationDefaults.Height"/>, else the host's default (1024).</summary>
        public int? Height { get; set; }

        /// <summary>Images per request; null: 1. Image i uses seed + i.</summary>
        public int? BatchSize { get; set; }

        /// <summary>Image-to-image source (PNG or JPEG): <see cref="ImageInput.FromFile"/> or <see cref="ImageInput.FromBytes"/>; null: text-to-image.</summary>
        public ImageInput InitImage { get; set; }

        /// <summary>Fraction of the schedule the base runs, in (0, 1); with a refiner the refiner continues from there. Null: host default (0.8 with a refiner).</summary>
        public double? DenoisingEnd { get; set; }

        /// <summary>The refiner's aesthetic score for the positive half, 0..10; null: host default (6.0).</summary>
        public double? AestheticScore { get; set; }

        /// <summary>The refiner's aesthetic score for the negative half, 0..10; null: host default (2.5).</summary>
        public double? NegativeAestheticScore { get; set; }

        /// <summary>Guidance rescale in [0, 1]; null: host default (0).</summary>
        public double? GuidanceRescale { get; set; }

        /// <summary>CLIP layers to skip, 0..10; null: host default (0).</summary>
        public int? ClipSkip { get; set; }
    }

    /// <summary>
    /// Settings a deployment fills in for requests that leave them unset (a service set up for one
    /// model's native size, or a test host with a tiny model). Set on <see cref="SdxlHostClientOptions.Defaults"/>.
    /// </summary>
    public sealed class GenerationDefaults
    {
        /// <summary>Width for requests whose <see cref="HyperparameterConfiguration.Width"/> is null; null: the host's default.</summary>
        public int? Width { get; set; }

        /// <summary>Height for requests whose <see cref="HyperparameterConfiguration.Height"/> is null; null: the host's default.</summary>
        public int? Height { get; set; }
    }

    /// <summary>How results come back.</summary>
    public sealed class OutputConfiguration
    {
        /// <summary>"png", "jpeg" or "webp" (any case); null: png.</summary>
        public string Format { get; set; }

        /// <summary>1..100 for jpeg/webp; null: 95.</summary>
        public int? Quality { get; set; }

        /// <summary>File or folder relative to the host's output_root; null: not saved (the images come back as bytes).</summary>
        public string SavePath { get; set; }

        /// <summary>Also return the encoded image bytes when saving (<see cref="GeneratedImage.ImageBytes"/>).</summary>
        public bool ReturnBase64 { get; set; }
    }

    /// <summary>Steps after generation.</summary>
    public sealed class PostProcessingConfiguration
    {
        /// <summary>Upscaling; off until <see cref="UpscaleConfiguration.Enabled"/> is true or a model, method or scale is set.</summary>
        public UpscaleConfiguration Upscale { get; set; } = new UpscaleConfiguration();
    }

    /// <summary>How the upscaler plugin enlarges an image.</summary>
    public enum UpscaleMethod
    {
        /// <summary>Run an ESRGAN-family network (<see cref="UpscaleConfiguration.Model"/> required).</summary>
        Model,

        /// <summary>Lanczos resize only, no network.</summary>
        Lanczos,
    }

    /// <summary>Upscaling options (wire: output.upscale, or the upscale message's data.upscale).</summary>
    public sealed class UpscaleConfiguration
    {
        /// <summary>True or false says so; null (default): on when <see cref="Model"/>, <see cref="Method"/> or <see cref="Scale"/> is set.</summary>
        public bool? Enabled { get; set; }

        /// <summary>Network or plain Lanczos; null: the host's default (model).</summary>
        public UpscaleMethod? Method { get; set; }

        /// <summary>Upscaler file under models_root/upscalers (as on disk, e.g. "RealESRGAN_x4plus.pth"); required for <see cref="UpscaleMethod.Model"/>.</summary>
        public string Model { get; set; }

        /// <summary>Final factor in (0, 8]; null: the network's own factor (2 for Lanczos).</summary>
        public double? Scale { get; set; }

        /// <summary>Largest input side given to the network at once (0 = whole image, else 16..4096); null: 256.</summary>
        public int? TileSize { get; set; }

        /// <summary>Context on each side of a tile, less than a quarter of the tile; null: 16.</summary>
        public int? TileOverlap { get; set; }

        /// <summary>Whether the transformer sends this upscale (see <see cref="Enabled"/>).</summary>
        public bool IsEnabled
        {
            get { return Enabled ?? (Model != null || Method.HasValue || Scale.HasValue); }
        }
    }

    /// <summary>Scheduling of the job on the host.</summary>
    public sealed class MetadataConfiguration
    {
        /// <summary>"high", "normal" or "low".</summary>
        public string Priority { get; set; } = "normal";

        /// <summary>Seconds the job may spend queued and running before the host answers TIMEOUT.</summary>
        public double TimeoutSeconds { get; set; } = 300;

        /// <summary>Free-form tags recorded with the job.</summary>
        public List<string> Tags { get; set; } = new List<string> { "enhanced_sdxl", "c_sharp_service" };
    }

    /// <summary>An `upscale` message: enlarge an image the client has (A1111's "Extras").</summary>
    public sealed class UpscaleRequest
    {
        /// <summary>The request id to send; null: the client makes one.</summary>
        public string RequestId { get; set; }

        /// <summary>The image to enlarge (PNG or JPEG); required.</summary>
        public ImageInput Image { get; set; }

        /// <summary>How to upscale; it is sent enabled whatever <see cref="UpscaleConfiguration.Enabled"/> says.</summary>
        public UpscaleConfiguration Upscale { get; set; } = new UpscaleConfiguration();

        /// <summary>Format, quality, save path, return bytes (as for a generation).</summary>
        public OutputConfiguration Output { get; set; } = new OutputConfiguration();

        /// <summary>Priority, timeout, tags.</summary>
        public MetadataConfiguration Metadata { get; set; } = new MetadataConfiguration();
    }

    /// <summary>A `preprocess` message: run a control-image preprocessor and get the map back.</summary>
    public sealed class PreprocessRequest
    {
        /// <summary>The request id to send; null: the client makes one.</summary>
        public string RequestId { get; set; }

        /// <summary>The image to process (PNG or JPEG); required.</summary>
        public ImageInput Image { get; set; }

        /// <summary>The preprocessor and its options; required.</summary>
        public PreprocessorConfiguration Preprocessor { get; set; }
    }
}
