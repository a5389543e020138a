// The C# service's response model (the seed design's EnhancedSDXLResponse), filled by
// EnhancedResponseTransformer from the host's wire response, plus the progress and host-query types.
// Thread-safety: none; each instance is owned by the caller that received it.

using System;
using System.Collections.Generic;

namespace SdxlHost.Client
{
    /// <summary>The outcome of one generation (wire: generated_images, processing_metrics, warnings, error, error_code).</summary>
    public sealed class EnhancedSDXLResponse
    {
        /// <summary>The request id the host answered.</summary>
        public string RequestId { get; set; }

        /// <summary>True when the host reports success.</summary>
        public bool Success { get; set; }

        /// <summary>The images, in batch order.</summary>
        public List<GeneratedImage> GeneratedImages { get; set; } = new List<GeneratedImage>();

        /// <summary>Timings and device facts; never null.</summary>
        public ProcessingMetrics ProcessingMetrics { get; set; } = new ProcessingMetrics();

        /// <summary>Non-fatal remarks (unknown fields, features skipped, ...).</summary>
        public List<string> Warnings { get; set; } = new List<string>();

        /// <summary>The human error message when <see cref="Success"/> is false.</summary>
        public string Error { get; set; }

        /// <summary>The stable error code (e.g. VALIDATION_ERROR) when <see cref="Success"/> is false.</summary>
        public string ErrorCode { get; set; }

        /// <summary>The request field at fault (e.g. data.dimensions.width), when the host names one.</summary>
        public string ErrorField { get; set; }

        /// <summary>The stages the host planned (and, unless dry run, ran), in order.</summary>
        public List<string> Stages { get; set; } = new List<string>();

        /// <summary>The wire response's <c>data</c> object as parsed (for fields not modelled here).</summary>
        public IDictionary<string, object> RawData { get; set; } = new Dictionary<string, object>();
    }

    /// <summary>One generated image.</summary>
    public sealed class GeneratedImage
    {
        /// <summary>Absolute path of the saved file; null when not saved.</summary>
        public string ImagePath { get; set; }

        /// <summary>Base64 of the encoded file; null when not returned.</summary>
        public string ImageData { get; set; }

        /// <summary>"png", "jpeg" or "webp".</summary>
        public string Format { get; set; }

        /// <summary>Width in pixels; 0 when the host did not say.</summary>
        public int Width { get; set; }

        /// <summary>Height in pixels; 0 when the host did not say.</summary>
        public int Height { get; set; }

        /// <summary>How this image was made.</summary>
        public ImageMetadata Metadata { get; set; } = new ImageMetadata();

        /// <summary>The decoded <see cref="ImageData"/>, or null when the host sent none.</summary>
        public byte[] GetImageBytes()
        {
            return ImageData == null ? null : Convert.FromBase64String(ImageData);
        }
    }

    /// <summary>Parameters that reproduce one image.</summary>
    public sealed class ImageMetadata
    {
        /// <summary>The seed of this image (batch image i: seed + i).</summary>
        public long? Seed { get; set; }

        /// <summary>Denoising steps.</summary>
        public int? Steps { get; set; }

        /// <summary>Guidance scale.</summary>
        public double? GuidanceScale { get; set; }

        /// <summary>Scheduler class name.</summary>
        public string Scheduler { get; set; }

        /// <summary>Models used.</summary>
        public ModelInfo ModelInfo { get; set; } = new ModelInfo();
    }

    /// <summary>Names of the models an image was made with.</summary>
    public sealed class ModelInfo
    {
        /// <summary>Base checkpoint.</summary>
        public string BaseModel { get; set; }

        /// <summary>Refiner checkpoint, or null when none was used.</summary>
        public string RefinerModel { get; set; }

        /// <summary>VAE, or null when the checkpoint's own was used.</summary>
        public string VaeModel { get; set; }
    }

    /// <summary>Timings and device facts of one generation.</summary>
    public sealed class ProcessingMetrics
    {
        /// <summary>Seconds from accepting the request to the response.</summary>
        public double? TotalTime { get; set; }

        /// <summary>Seconds spent running the stages.</summary>
        public double? InferenceTime { get; set; }

        /// <summary>Seconds the job waited in the host's queue.</summary>
        public double? QueueTime { get; set; }

        /// <summary>Seconds spent encoding and saving the images.</summary>
        public double? OutputTime { get; set; }

        /// <summary>Device memory in use, in bytes, as the host reports it.</summary>
        public double? DeviceMemoryUsed { get; set; }

        /// <summary>Peak memory of the host process, in bytes, when reported.</summary>
        public double? PeakMemoryBytes { get; set; }

        /// <summary>The device that ran the job (e.g. "cpu").</summary>
        public string DeviceName { get; set; }
    }

    /// <summary>One progress event of a running generation (wire: message_type "progress").</summary>
    public sealed class GenerationProgress
    {
        /// <summary>The request this event belongs to.</summary>
        public string RequestId { get; set; }

        /// <summary>The stage that reports (e.g. "denoise").</summary>
        public string Stage { get; set; }

        /// <summary>Steps done in this stage.</summary>
        public int Step { get; set; }

        /// <summary>Steps this stage will do.</summary>
        public int TotalSteps { get; set; }

        /// <summary>Seconds since the job started.</summary>
        public double ElapsedSeconds { get; set; }

        /// <summary>Step / TotalSteps in [0, 1]; 0 when TotalSteps is 0.</summary>
        public double Fraction { get { return TotalSteps > 0 ? Math.Min(1.0, (double)Step / TotalSteps) : 0.0; } }

        /// <summary>True for the event a stage sends when it starts (step 0 of 0 steps).</summary>
        public bool IsStageStart { get { return Step == 0 && TotalSteps == 0 && Detail == null; } }

        /// <summary>Where the current step is inside a model (wire: data.detail, e.g. VAE block 3 of
        /// 5); null for step events.</summary>
        public ProgressDetail Detail { get; set; }
    }

    /// <summary>Progress inside one step of a long stage (wire: a progress event's data.detail).</summary>
    public sealed class ProgressDetail
    {
        /// <summary>What runs: "load_weights", "down_blocks", "up_blocks", "vae_decode", "vae_tiles", ...</summary>
        public string Part { get; set; }

        /// <summary>1-based position of the part now done.</summary>
        public int Index { get; set; }

        /// <summary>How many there are (0 when unknown).</summary>
        public int Count { get; set; }
    }

    /// <summary>What the host offers (wire: the data of a `capabilities` response).</summary>
    public sealed class HostCapabilities
    {
        /// <summary>Every plugin the host found, with its state.</summary>
        public List<PluginInfo> Plugins { get; set; } = new List<PluginInfo>();

        /// <summary>Names of the registered schedulers.</summary>
        public List<string> Schedulers { get; set; } = new List<string>();

        /// <summary>Names of the registered control-image preprocessors.</summary>
        public List<string> Preprocessors { get; set; } = new List<string>();

        /// <summary>The host's request limits (e.g. max width), as sent.</summary>
        public IDictionary<string, object> Limits { get; set; } = new Dictionary<string, object>();

        /// <summary>The whole capabilities object as parsed.</summary>
        public IDictionary<string, object> Raw { get; set; } = new Dictionary<string, object>();

        /// <summary>The plugin named <paramref name="name"/>, or null.</summary>
        public PluginInfo FindPlugin(string name)
        {
            return Plugins.Find(p => p.Name == name);
        }
    }

    /// <summary>One plugin as the host reports it.</summary>
    public sealed class PluginInfo
    {
        /// <summary>Plugin name (also its feature flag: plugins.enabled.NAME).</summary>
        public string Name { get; set; }

        /// <summary>Plugin version.</summary>
        public string Version { get; set; }

        /// <summary>"loaded", "disabled" or "failed".</summary>
        public string State { get; set; }

        /// <summary>Why it is disabled or failed; null when loaded.</summary>
        public string Reason { get; set; }

        /// <summary>Features or stages it provides.</summary>
        public List<string> Provides { get; set; } = new List<string>();
    }

    /// <summary>One model file the host can load (wire: an entry of `list_models`).</summary>
    public sealed class ModelEntry
    {
        /// <summary>Kind: checkpoints, loras, controlnet, vae or upscalers.</summary>
        public string Kind { get; set; }

        /// <summary>The name to put in a request.</summary>
        public string Name { get; set; }

        /// <summary>Where the host found it.</summary>
        public string Path { get; set; }

        /// <summary>Size on disk in bytes, when reported.</summary>
        public long? SizeBytes { get; set; }

        /// <summary>Whether it is in the host's model cache now.</summary>
        public bool Loaded { get; set; }
    }
}
