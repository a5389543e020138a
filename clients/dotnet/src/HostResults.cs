// Typed answers of the host's non-generation messages: capabilities, list_models, status,
// load_model / unload_model, cancel, reload_config, preprocess, ping. Each keeps the parsed
// `data` object as Raw for fields not modelled here.
// Thread-safety: none; each instance is owned by the caller that received it.

using System;
using System.Collections.Generic;

namespace SdxlHost.Client
{
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

        /// <summary>Each preprocessor with its description and declared options.</summary>
        public List<PreprocessorInfo> PreprocessorDetails { get; set; } = new List<PreprocessorInfo>();

        /// <summary>The message types the host answers.</summary>
        public List<string> MessageTypes { get; set; } = new List<string>();

        /// <summary>The error codes the host may send (wire text).</summary>
        public List<string> ErrorCodes { get; set; } = new List<string>();

        /// <summary>Model kinds <c>LoadModelAsync</c> can preload with the enabled plugins.</summary>
        public List<string> PreloadableModelKinds { get; set; } = new List<string>();

        /// <summary>Image formats the host encodes.</summary>
        public List<string> OutputFormats { get; set; } = new List<string>();

        /// <summary>The host's version.</summary>
        public string HostVersion { get; set; }

        /// <summary>The plugin ABI version the host accepts.</summary>
        public int? AbiVersion { get; set; }

        /// <summary>The device the host computes on (e.g. "cpu").</summary>
        public string Device { get; set; }

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

    /// <summary>A registered control-image preprocessor (capabilities' preprocessor_details).</summary>
    public sealed class PreprocessorInfo
    {
        /// <summary>Its name, as <see cref="PreprocessorConfiguration.Name"/> takes it.</summary>
        public string Name { get; set; }

        /// <summary>What it does.</summary>
        public string Description { get; set; }

        /// <summary>Its options.</summary>
        public List<PreprocessorOptionInfo> Options { get; set; } = new List<PreprocessorOptionInfo>();
    }

    /// <summary>One option a preprocessor declares.</summary>
    public sealed class PreprocessorOptionInfo
    {
        /// <summary>The option's name (a key of <see cref="PreprocessorConfiguration.Options"/>).</summary>
        public string Name { get; set; }

        /// <summary>"number", "integer", "boolean" or "string".</summary>
        public string Type { get; set; }

        /// <summary>The default value as parsed (long, double, bool or string).</summary>
        public object Default { get; set; }

        /// <summary>Smallest allowed value, when declared.</summary>
        public double? Minimum { get; set; }

        /// <summary>Largest allowed value, when declared.</summary>
        public double? Maximum { get; set; }

        /// <summary>What it controls.</summary>
        public string Description { get; set; }
    }

    /// <summary>The kinds of model under the host's models_root (wire: the folder name).</summary>
    public enum ModelKind
    {
        /// <summary>checkpoints/: base and refiner checkpoints.</summary>
        Checkpoints,

        /// <summary>loras/.</summary>
        Loras,

        /// <summary>controlnet/.</summary>
        ControlNet,

        /// <summary>vae/.</summary>
        Vae,

        /// <summary>upscalers/.</summary>
        Upscalers,
    }

    /// <summary>The host's model cache (status, load_model, unload_model).</summary>
    public sealed class ModelCacheInfo
    {
        /// <summary>Models in the cache.</summary>
        public int LoadedModels { get; set; }

        /// <summary>Bytes the cached models hold.</summary>
        public long LoadedBytes { get; set; }

        /// <summary>The cache's model limit.</summary>
        public int? MaxModels { get; set; }

        /// <summary>The cache's byte limit (0: none).</summary>
        public long? MaxBytes { get; set; }

        /// <summary>The cached models.</summary>
        public List<CachedModel> Models { get; set; } = new List<CachedModel>();
    }

    /// <summary>One model in the host's cache.</summary>
    public sealed class CachedModel
    {
        /// <summary>Its kind (wire folder name, e.g. "checkpoints").</summary>
        public string Kind { get; set; }

        /// <summary>Its name.</summary>
        public string Name { get; set; }

        /// <summary>Which plugin's form of it (e.g. "sdxl-pipeline:cpu:fp32").</summary>
        public string Variant { get; set; }

        /// <summary>Bytes it holds.</summary>
        public long Bytes { get; set; }

        /// <summary>Whether a running job holds it.</summary>
        public bool InUse { get; set; }
    }

    /// <summary>The answer of load_model or unload_model.</summary>
    public sealed class ModelLoadResult
    {
        /// <summary>The model's kind (wire folder name).</summary>
        public string Kind { get; set; }

        /// <summary>The model's name.</summary>
        public string Name { get; set; }

        /// <summary>load_model: true once loaded. unload_model: false.</summary>
        public bool Loaded { get; set; }

        /// <summary>unload_model: true when it was in the cache and was dropped. load_model: false.</summary>
        public bool Unloaded { get; set; }

        /// <summary>The cache after the call.</summary>
        public ModelCacheInfo Cache { get; set; } = new ModelCacheInfo();
    }

    /// <summary>A job the host is running (status).</summary>
    public sealed class RunningJob
    {
        /// <summary>Its request id.</summary>
        public string RequestId { get; set; }

        /// <summary>"generation", "upscale", "preprocess" or "load_model".</summary>
        public string Kind { get; set; }

        /// <summary>Its priority.</summary>
        public string Priority { get; set; }

        /// <summary>The stage it is in.</summary>
        public string Stage { get; set; }

        /// <summary>Step within the stage.</summary>
        public int Step { get; set; }

        /// <summary>Steps of the stage.</summary>
        public int TotalSteps { get; set; }

        /// <summary>Seconds since it left the queue.</summary>
        public double ElapsedSeconds { get; set; }
    }

    /// <summary>The host's state (status).</summary>
    public sealed class HostStatus
    {
        /// <summary>Jobs waiting in the queue.</summary>
        public int QueueDepth { get; set; }

        /// <summary>The queue's limit.</summary>
        public int? MaxPending { get; set; }

        /// <summary>Request ids waiting, by priority ("high", "normal", "low").</summary>
        public Dictionary<string, List<string>> Queued { get; set; } = new Dictionary<string, List<string>>();

        /// <summary>Jobs running now.</summary>
        public List<RunningJob> Running { get; set; } = new List<RunningJob>();

        /// <summary>Executors (jobs that can run at once).</summary>
        public int Executors { get; set; }

        /// <summary>Connected pipe clients (this one included).</summary>
        public int Clients { get; set; }

        /// <summary>Resident memory of the host process, in bytes.</summary>
        public long? RssBytes { get; set; }

        /// <summary>Peak resident memory of the host process, in bytes.</summary>
        public long? PeakRssBytes { get; set; }

        /// <summary>The model cache.</summary>
        public ModelCacheInfo Models { get; set; } = new ModelCacheInfo();

        /// <summary>Seconds since the host started.</summary>
        public double UptimeSeconds { get; set; }

        /// <summary>True while the host shuts down.</summary>
        public bool ShuttingDown { get; set; }

        /// <summary>The config file the host was started with.</summary>
        public string ConfigFile { get; set; }

        /// <summary>The whole status object as parsed.</summary>
        public IDictionary<string, object> Raw { get; set; } = new Dictionary<string, object>();
    }

    /// <summary>The answer of cancel.</summary>
    public sealed class CancelResult
    {
        /// <summary>True: the job was cancelled (it answers CANCELLED).</summary>
        public bool Cancelled { get; set; }

        /// <summary>The cancelled job's request id.</summary>
        public string RequestId { get; set; }

        /// <summary>Where it was: "queued" or "running".</summary>
        public string State { get; set; }
    }

    /// <summary>The answer of reload_config.</summary>
    public sealed class ReloadResult
    {
        /// <summary>True when the new config is in force.</summary>
        public bool Reloaded { get; set; }

        /// <summary>Changes that need a restart, unknown keys, ...</summary>
        public List<string> Warnings { get; set; } = new List<string>();

        /// <summary>The whole config now in force, as parsed.</summary>
        public IDictionary<string, object> Config { get; set; } = new Dictionary<string, object>();

        /// <summary>The plugins after the reload, with their state.</summary>
        public List<PluginInfo> Plugins { get; set; } = new List<PluginInfo>();
    }

    /// <summary>The answer of preprocess: the control map.</summary>
    public sealed class PreprocessResult
    {
        /// <summary>The request id the host answered.</summary>
        public string RequestId { get; set; }

        /// <summary>The preprocessor that ran.</summary>
        public string Preprocessor { get; set; }

        /// <summary>The options in force (defaults filled in).</summary>
        public IDictionary<string, object> Options { get; set; } = new Dictionary<string, object>();

        /// <summary>The control map, an encoded PNG.</summary>
        public byte[] ImageBytes { get; set; }

        /// <summary>"png".</summary>
        public string Format { get; set; }

        /// <summary>Map width.</summary>
        public int Width { get; set; }

        /// <summary>Map height.</summary>
        public int Height { get; set; }

        /// <summary>Map channels.</summary>
        public int Channels { get; set; }

        /// <summary>Warnings of the host.</summary>
        public List<string> Warnings { get; set; } = new List<string>();
    }

    /// <summary>The answer of ping.</summary>
    public sealed class PingResult
    {
        /// <summary>Time from sending to the answer.</summary>
        public TimeSpan RoundTrip { get; set; }

        /// <summary>The host's version.</summary>
        public string Version { get; set; }

        /// <summary>Seconds since the host started.</summary>
        public double UptimeSeconds { get; set; }
    }

    /// <summary>The answer of metrics: Prometheus exposition text.</summary>
    public sealed class HostMetrics
    {
        /// <summary>The text's content type ("text/plain; version=0.0.4; charset=utf-8").</summary>
        public string ContentType { get; set; }

        /// <summary>The metrics, one sample per line (operations.md lists them).</summary>
        public string Text { get; set; }
    }
}
