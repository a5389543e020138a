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

        /// <summary>The stable error code (e.g. ValidationError) when <see cref="Success"/> is false; None on success.</summary>
        public SdxlHostErrorCode ErrorCode { get; set; }

        /// <summary>The wire's error_code text (e.g. "VALIDATION_ERROR") when <see cref="Success"/> is false, else null.</summary>
        public string WireErrorCode { get; set; }

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

        private string imageData_;
        private byte[] imageBytes_;

        /// <summary>Base64 of the encoded file; null when not returned.</summary>
        public string ImageData
        {
            get { return imageData_; }
            set { imageData_ = value; imageBytes_ = null; }
        }

        /// <summary>The encoded file (PNG, JPEG or WebP) decoded from <see cref="ImageData"/>; null when the host sent none.</summary>
        public byte[] ImageBytes
        {
            get
            {
                if (imageBytes_ == null && imageData_ != null) imageBytes_ = Convert.FromBase64String(imageData_);
                return imageBytes_;
            }
        }

        /// <summary>"png", "jpeg" or "webp".</summary>
        public string Format { get; set; }

        /// <summary>Width in pixels; 0 when the host did not say.</summary>
        public int Width { get; set; }

        /// <summary>Height in pixels; 0 when the host did not say.</summary>
        public int Height { get; set; }

        /// <summary>How this image was made.</summary>
        public ImageMetadata Metadata { get; set; } = new ImageMetadata();

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

        /// <summary>The LoRAs applied (name, weight, file hash); empty when none.</summary>
        public List<AppliedLoRA> LoRAs { get; set; } = new List<AppliedLoRA>();

        /// <summary>The refiner's part (name, switch point); null when no refiner ran.</summary>
        public RefinerInfo Refiner { get; set; }

        /// <summary>The upscale that was applied; null when none.</summary>
        public UpscalerInfo Upscaler { get; set; }

        /// <summary>The image's whole metadata object as parsed (infotext, plugin-specific keys).</summary>
        public IDictionary<string, object> Raw { get; set; } = new Dictionary<string, object>();
    }

    /// <summary>One LoRA as applied to an image.</summary>
    public sealed class AppliedLoRA
    {
        /// <summary>The LoRA name.</summary>
        public string Name { get; set; }

        /// <summary>Its weight.</summary>
        public double Weight { get; set; }

        /// <summary>Short hash of the file (A1111's "Lora hashes").</summary>
        public string Hash { get; set; }
    }

    /// <summary>What the refiner did for an image.</summary>
    public sealed class RefinerInfo
    {
        /// <summary>The refiner checkpoint.</summary>
        public string Name { get; set; }

        /// <summary>The fraction of the schedule where the refiner took over.</summary>
        public double? SwitchAt { get; set; }
    }

    /// <summary>How an image was upscaled.</summary>
    public sealed class UpscalerInfo
    {
        /// <summary>"model" or "lanczos".</summary>
        public string Method { get; set; }

        /// <summary>The upscaler model name, or "lanczos".</summary>
        public string Name { get; set; }

        /// <summary>The final factor.</summary>
        public double? Scale { get; set; }

        /// <summary>Width before upscaling.</summary>
        public int FromWidth { get; set; }

        /// <summary>Height before upscaling.</summary>
        public int FromHeight { get; set; }

        /// <summary>Final width.</summary>
        public int Width { get; set; }

        /// <summary>Final height.</summary>
        public int Height { get; set; }

        /// <summary>Network architecture (RRDBNet, SRVGGNetCompact); null for Lanczos.</summary>
        public string Architecture { get; set; }

        /// <summary>The network's own factor; null for Lanczos.</summary>
        public int? ModelScale { get; set; }
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
}
