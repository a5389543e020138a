// Wire messages -> typed objects: responses (the seed design's EnhancedResponseTransformer, read
// in the other direction), progress events, errors, and the answers of every other message. Reads are
// lenient (WireValues): fields the host adds later are kept in Raw*/RawData, never an error.
// Thread-safety: stateless.

using System.Collections.Generic;
using System.Text.RegularExpressions;

namespace SdxlHost.Client
{
    /// <summary>Turns parsed wire messages into the client's typed objects.</summary>
    public static class EnhancedResponseTransformer
    {
        private static readonly Regex kFieldPrefix =
            new Regex(@"^((?:data|request_id|message_type)(?:\.[A-Za-z0-9_]+|\[[0-9]+\])*)\s*:", RegexOptions.CultureInvariant);

        /// <summary>An inference response envelope as an <see cref="EnhancedSDXLResponse"/> (errors included, not thrown).</summary>
        public static EnhancedSDXLResponse TransformResponse(IDictionary<string, object> envelope)
        {
            var response = new EnhancedSDXLResponse();
            response.RequestId = WireValues.GetString(envelope, "request_id");
            response.Success = WireValues.GetBool(envelope, "success") ?? false;
            response.Warnings = WireValues.GetStrings(envelope, "warnings");
            var data = WireValues.GetObject(envelope, "data") ?? new Dictionary<string, object>();
            response.RawData = data;
            foreach (object item in WireValues.GetArray(data, "generated_images"))
                response.GeneratedImages.Add(TransformImage(item as IDictionary<string, object>));
            response.ProcessingMetrics = TransformMetrics(WireValues.GetObject(data, "processing_metrics"));
            response.Stages = ReadStageNames(WireValues.GetArray(data, "stages"));
            foreach (string warning in WireValues.GetStrings(data, "warnings"))
                if (!response.Warnings.Contains(warning)) response.Warnings.Add(warning);
            if (!response.Success)
            {
                response.Error = ErrorMessage(envelope);
                response.WireErrorCode = WireValues.GetString(envelope, "error_code") ?? "INTERNAL_ERROR";
                response.ErrorCode = SdxlHostErrorCodes.Parse(response.WireErrorCode);
                response.ErrorField = ErrorField(envelope);
            }
            return response;
        }

        /// <summary>The typed exception for an error envelope (success false).</summary>
        public static SdxlHostException ToException(IDictionary<string, object> envelope, EnhancedSDXLResponse response = null)
        {
            return new SdxlHostException(
                WireValues.GetString(envelope, "error_code") ?? "INTERNAL_ERROR",
                ErrorMessage(envelope),
                ErrorField(envelope),
                WireValues.GetString(envelope, "request_id"),
                response);
        }

        /// <summary>A progress envelope's <c>data</c> as a <see cref="GenerationProgress"/>.</summary>
        public static GenerationProgress TransformProgress(IDictionary<string, object> envelope)
        {
            var data = WireValues.GetObject(envelope, "data");
            var detail = WireValues.GetObject(data, "detail");
            return new GenerationProgress
            {
                RequestId = WireValues.GetString(envelope, "request_id"),
                Stage = WireValues.GetString(data, "stage"),
                Step = WireValues.GetInt(data, "step") ?? 0,
                TotalSteps = WireValues.GetInt(data, "total_steps") ?? 0,
                ElapsedSeconds = WireValues.GetDouble(data, "elapsed_s") ?? 0.0,
                Detail = detail == null ? null : new ProgressDetail
                {
                    Part = WireValues.GetString(detail, "part"),
                    Index = WireValues.GetInt(detail, "index") ?? 0,
                    Count = WireValues.GetInt(detail, "count") ?? 0,
                },
            };
        }

        /// <summary>A capabilities response's <c>data</c> as <see cref="HostCapabilities"/>.</summary>
        public static HostCapabilities TransformCapabilities(IDictionary<string, object> data)
        {
            var capabilities = new HostCapabilities { Raw = data ?? new Dictionary<string, object>() };
            capabilities.Plugins = ReadPlugins(WireValues.Get(data, "plugins"));
            capabilities.Schedulers = ReadNames(WireValues.Get(data, "schedulers"));
            capabilities.Preprocessors = ReadNames(WireValues.Get(data, "preprocessors"));
            capabilities.Limits = WireValues.GetObject(data, "limits") ?? new Dictionary<string, object>();
            foreach (object item in WireValues.GetArray(data, "preprocessor_details"))
                capabilities.PreprocessorDetails.Add(ReadPreprocessor(item as IDictionary<string, object>));
            capabilities.MessageTypes = WireValues.GetStrings(data, "message_types");
            capabilities.ErrorCodes = WireValues.GetStrings(data, "error_codes");
            capabilities.PreloadableModelKinds = WireValues.GetStrings(data, "preloadable_model_kinds");
            capabilities.OutputFormats = WireValues.GetStrings(data, "output_formats");
            var host = WireValues.GetObject(data, "host");
            capabilities.HostVersion = WireValues.GetString(host, "version");
            capabilities.AbiVersion = WireValues.GetInt(host, "abi_version");
            capabilities.Device = WireValues.GetString(data, "device");
            return capabilities;
        }

        /// <summary>
        /// A list_models response's <c>data</c> ({"checkpoints":[{name,path,size_bytes,loaded}],...},
        /// optionally wrapped in "models") as a flat list, each entry tagged with its kind.
        /// </summary>
        public static List<ModelEntry> TransformModelList(IDictionary<string, object> data)
        {
            var kinds = WireValues.GetObject(data, "models") ?? data ?? new Dictionary<string, object>();
            var result = new List<ModelEntry>();
            foreach (var pair in kinds)
            {
                var entries = pair.Value as IList<object>;
                if (entries == null) continue;
                foreach (object item in entries) result.Add(ReadModelEntry(pair.Key, item));
            }
            return result;
        }

        /// <summary>A status response's <c>data</c> as <see cref="HostStatus"/>.</summary>
        public static HostStatus TransformStatus(IDictionary<string, object> data)
        {
            var status = new HostStatus { Raw = data ?? new Dictionary<string, object>() };
            var queue = WireValues.GetObject(data, "queue");
            status.QueueDepth = WireValues.GetInt(queue, "depth") ?? 0;
            status.MaxPending = WireValues.GetInt(queue, "max_pending");
            foreach (string priority in new[] { "high", "normal", "low" })
                status.Queued[priority] = WireValues.GetStrings(queue, priority);
            foreach (object item in WireValues.GetArray(data, "running"))
            {
                var job = item as IDictionary<string, object>;
                status.Running.Add(new RunningJob
                {
                    RequestId = WireValues.GetString(job, "request_id"),
                    Kind = WireValues.GetString(job, "kind"),
                    Priority = WireValues.GetString(job, "priority"),
                    Stage = WireValues.GetString(job, "stage"),
                    Step = WireValues.GetInt(job, "step") ?? 0,
                    TotalSteps = WireValues.GetInt(job, "total_steps") ?? 0,
                    ElapsedSeconds = WireValues.GetDouble(job, "elapsed_s") ?? 0.0,
                });
            }
            status.Executors = WireValues.GetInt(data, "executors") ?? 0;
            status.Clients = WireValues.GetInt(data, "clients") ?? 0;
            var memory = WireValues.GetObject(data, "memory");
            status.RssBytes = WireValues.GetLong(memory, "rss_bytes");
            status.PeakRssBytes = WireValues.GetLong(memory, "peak_rss_bytes");
            status.Models = TransformCache(WireValues.GetObject(data, "models"));
            status.UptimeSeconds = WireValues.GetDouble(data, "uptime_s") ?? 0.0;
            status.ShuttingDown = WireValues.GetBool(data, "shutting_down") ?? false;
            status.ConfigFile = WireValues.GetString(data, "config_file");
            return status;
        }

        /// <summary>A load_model or unload_model response's <c>data</c>.</summary>
        public static ModelLoadResult TransformModelLoad(IDictionary<string, object> data)
        {
            return new ModelLoadResult
            {
                Kind = WireValues.GetString(data, "kind"),
                Name = WireValues.GetString(data, "name"),
                Loaded = WireValues.GetBool(data, "loaded") ?? false,
                Unloaded = WireValues.GetBool(data, "unloaded") ?? false,
                Cache = TransformCache(WireValues.GetObject(data, "cache")),
            };
        }

        /// <summary>A model cache object (status' models, load/unload's cache).</summary>
        public static ModelCacheInfo TransformCache(IDictionary<string, object> cache)
        {
            var info = new ModelCacheInfo
            {
                LoadedModels = WireValues.GetInt(cache, "loaded_models") ?? 0,
                LoadedBytes = WireValues.GetLong(cache, "loaded_bytes") ?? 0,
                MaxModels = WireValues.GetInt(cache, "max_models"),
                MaxBytes = WireValues.GetLong(cache, "max_bytes"),
            };
            foreach (object item in WireValues.GetArray(cache, "models"))
            {
                var model = item as IDictionary<string, object>;
                info.Models.Add(new CachedModel
                {
                    Kind = WireValues.GetString(model, "kind"),
                    Name = WireValues.GetString(model, "name"),
                    Variant = WireValues.GetString(model, "variant"),
                    Bytes = WireValues.GetLong(model, "bytes") ?? 0,
                    InUse = WireValues.GetBool(model, "in_use") ?? false,
                });
            }
            return info;
        }

        /// <summary>A cancel response's <c>data</c>.</summary>
        public static CancelResult TransformCancel(IDictionary<string, object> data)
        {
            return new CancelResult
            {
                Cancelled = WireValues.GetBool(data, "cancelled") ?? false,
                RequestId = WireValues.GetString(data, "request_id"),
                State = WireValues.GetString(data, "state"),
            };
        }

        /// <summary>A reload_config response envelope (its warnings are the reload's own remarks).</summary>
        public static ReloadResult TransformReload(IDictionary<string, object> envelope)
        {
            var data = WireValues.GetObject(envelope, "data");
            return new ReloadResult
            {
                Reloaded = WireValues.GetBool(data, "reloaded") ?? false,
                Warnings = WireValues.GetStrings(envelope, "warnings"),
                Config = WireValues.GetObject(data, "config") ?? new Dictionary<string, object>(),
                Plugins = ReadPlugins(WireValues.Get(data, "plugins")),
            };
        }

        /// <summary>A preprocess response envelope as a <see cref="PreprocessResult"/> (the map decoded to bytes).</summary>
        public static PreprocessResult TransformPreprocess(IDictionary<string, object> envelope)
        {
            var data = WireValues.GetObject(envelope, "data");
            string image = WireValues.GetString(data, "image");
            return new PreprocessResult
            {
                RequestId = WireValues.GetString(envelope, "request_id"),
                Preprocessor = WireValues.GetString(data, "preprocessor"),
                Options = WireValues.GetObject(data, "options") ?? new Dictionary<string, object>(),
                ImageBytes = image == null ? null : System.Convert.FromBase64String(image),
                Format = WireValues.GetString(data, "format"),
                Width = WireValues.GetInt(data, "width") ?? 0,
                Height = WireValues.GetInt(data, "height") ?? 0,
                Channels = WireValues.GetInt(data, "channels") ?? 0,
                Warnings = WireValues.GetStrings(envelope, "warnings"),
            };
        }

        /// <summary>A ping response's <c>data</c> (the round trip is the caller's to fill).</summary>
        public static PingResult TransformPing(IDictionary<string, object> data)
        {
            return new PingResult
            {
                Version = WireValues.GetString(data, "version"),
                UptimeSeconds = WireValues.GetDouble(data, "uptime_s") ?? 0.0,
            };
        }

        /// <summary>The field at fault: an explicit "field"/"error_field", else the "data.x.y:" prefix of the message.</summary>
        public static string ErrorField(IDictionary<string, object> envelope)
        {
            string field = WireValues.GetString(envelope, "field") ?? WireValues.GetString(envelope, "error_field");
            var errorObject = WireValues.GetObject(envelope, "error");
            if (field == null && errorObject != null) field = WireValues.GetString(errorObject, "field");
            if (!string.IsNullOrEmpty(field)) return field;
            string message = ErrorMessage(envelope);
            var match = kFieldPrefix.Match(message ?? string.Empty);
            return match.Success ? match.Groups[1].Value : null;
        }

        private static string ErrorMessage(IDictionary<string, object> envelope)
        {
            var errorObject = WireValues.GetObject(envelope, "error");
            if (errorObject != null) return WireValues.GetString(errorObject, "message") ?? WireJson.Serialize(errorObject);
            return WireValues.GetString(envelope, "error");
        }

        private static string NullIfEmpty(string text)
        {
            return string.IsNullOrEmpty(text) ? null : text;
        }

        private static GeneratedImage TransformImage(IDictionary<string, object> image)
        {
            var metadata = WireValues.GetObject(image, "metadata");
            var modelInfo = WireValues.GetObject(metadata, "model_info");
            var loras = new List<AppliedLoRA>();
            foreach (object item in WireValues.GetArray(metadata, "loras"))
            {
                var lora = item as IDictionary<string, object>;
                loras.Add(new AppliedLoRA
                {
                    Name = WireValues.GetString(lora, "name"),
                    Weight = WireValues.GetDouble(lora, "weight") ?? 0.0,
                    Hash = WireValues.GetString(lora, "hash"),
                });
            }
            return new GeneratedImage
            {
                ImagePath = WireValues.GetString(image, "image_path"),
                ImageData = WireValues.GetString(image, "image_data"),
                Format = WireValues.GetString(image, "format"),
                Width = WireValues.GetInt(image, "width") ?? 0,
                Height = WireValues.GetInt(image, "height") ?? 0,
                Metadata = new ImageMetadata
                {
                    Seed = WireValues.GetLong(metadata, "seed"),
                    Steps = WireValues.GetInt(metadata, "steps"),
                    GuidanceScale = WireValues.GetDouble(metadata, "guidance_scale"),
                    Scheduler = WireValues.GetString(metadata, "scheduler"),
                    ModelInfo = new ModelInfo
                    {
                        BaseModel = WireValues.GetString(modelInfo, "base_model"),
                        RefinerModel = NullIfEmpty(WireValues.GetString(modelInfo, "refiner_model")),
                        VaeModel = NullIfEmpty(WireValues.GetString(modelInfo, "vae_model")),
                    },
                    LoRAs = loras,
                    Refiner = ReadRefiner(WireValues.GetObject(metadata, "refiner")),
                    Upscaler = ReadUpscaler(WireValues.GetObject(metadata, "upscaler")),
                    Raw = metadata ?? new Dictionary<string, object>(),
                },
            };
        }

        private static RefinerInfo ReadRefiner(IDictionary<string, object> refiner)
        {
            if (refiner == null) return null;
            return new RefinerInfo
            {
                Name = WireValues.GetString(refiner, "name"),
                SwitchAt = WireValues.GetDouble(refiner, "switch_at"),
            };
        }

        private static UpscalerInfo ReadUpscaler(IDictionary<string, object> upscaler)
        {
            if (upscaler == null) return null;
            var from = WireValues.GetObject(upscaler, "from");
            return new UpscalerInfo
            {
                Method = WireValues.GetString(upscaler, "method"),
                Name = WireValues.GetString(upscaler, "name"),
                Scale = WireValues.GetDouble(upscaler, "scale"),
                FromWidth = WireValues.GetInt(from, "width") ?? 0,
                FromHeight = WireValues.GetInt(from, "height") ?? 0,
                Width = WireValues.GetInt(upscaler, "width") ?? 0,
                Height = WireValues.GetInt(upscaler, "height") ?? 0,
                Architecture = WireValues.GetString(upscaler, "architecture"),
                ModelScale = WireValues.GetInt(upscaler, "model_scale"),
            };
        }

        private static PreprocessorInfo ReadPreprocessor(IDictionary<string, object> preprocessor)
        {
            var info = new PreprocessorInfo
            {
                Name = WireValues.GetString(preprocessor, "name"),
                Description = WireValues.GetString(preprocessor, "description"),
            };
            foreach (object item in WireValues.GetArray(preprocessor, "options"))
            {
                var option = item as IDictionary<string, object>;
                info.Options.Add(new PreprocessorOptionInfo
                {
                    Name = WireValues.GetString(option, "name"),
                    Type = WireValues.GetString(option, "type"),
                    Default = WireValues.Get(option, "default"),
                    Minimum = WireValues.GetDouble(option, "minimum"),
                    Maximum = WireValues.GetDouble(option, "maximum"),
                    Description = WireValues.GetString(option, "description"),
                });
            }
            return info;
        }

        private static ProcessingMetrics TransformMetrics(IDictionary<string, object> metrics)
        {
            return new ProcessingMetrics
            {
                TotalTime = WireValues.GetDouble(metrics, "total_time"),
                QueueTime = WireValues.GetDouble(metrics, "queue_time"),
                InferenceTime = WireValues.GetDouble(metrics, "inference_time"),
                OutputTime = WireValues.GetDouble(metrics, "output_time"),
                DeviceMemoryUsed = WireValues.GetDouble(metrics, "device_memory_used") ?? WireValues.GetDouble(metrics, "memory_used"),
                PeakMemoryBytes = WireValues.GetDouble(metrics, "peak_memory_bytes"),
                DeviceName = WireValues.GetString(metrics, "device_name"),
            };
        }

        /// <summary>Stage names from ["a","b"] or [{"name":"a"},...].</summary>
        private static List<string> ReadStageNames(IList<object> stages)
        {
            var names = new List<string>();
            foreach (object stage in stages)
            {
                var map = stage as IDictionary<string, object>;
                names.Add(map != null ? WireValues.GetString(map, "name") : stage as string);
            }
            return names;
        }

        /// <summary>Names from ["a","b"], [{"name":"a"},...] or {"a":{...},"b":{...}}.</summary>
        private static List<string> ReadNames(object value)
        {
            var names = new List<string>();
            var map = value as IDictionary<string, object>;
            if (map != null) { names.AddRange(map.Keys); return names; }
            var list = value as IList<object>;
            if (list != null) names.AddRange(ReadStageNames(list));
            return names;
        }

        /// <summary>Plugins from [{"name":..},...] or {"NAME":{..},...}.</summary>
        private static List<PluginInfo> ReadPlugins(object value)
        {
            var plugins = new List<PluginInfo>();
            var map = value as IDictionary<string, object>;
            if (map != null)
            {
                foreach (var pair in map) plugins.Add(ReadPlugin(pair.Value as IDictionary<string, object>, pair.Key));
                return plugins;
            }
            var list = value as IList<object>;
            if (list != null)
                foreach (object item in list) plugins.Add(ReadPlugin(item as IDictionary<string, object>, null));
            return plugins;
        }

        private static PluginInfo ReadPlugin(IDictionary<string, object> plugin, string nameFromKey)
        {
            return new PluginInfo
            {
                Name = WireValues.GetString(plugin, "name") ?? nameFromKey,
                Version = WireValues.GetString(plugin, "version"),
                State = WireValues.GetString(plugin, "state"),
                Reason = NullIfEmpty(WireValues.GetString(plugin, "reason")),
                Provides = ReadNames(WireValues.Get(plugin, "provides")),
            };
        }

        private static ModelEntry ReadModelEntry(string kind, object item)
        {
            var map = item as IDictionary<string, object>;
            if (map == null) return new ModelEntry { Kind = kind, Name = item as string };
            return new ModelEntry
            {
                Kind = kind,
                Name = WireValues.GetString(map, "name"),
                Path = WireValues.GetString(map, "path"),
                SizeBytes = WireValues.GetLong(map, "size_bytes"),
                Loaded = WireValues.GetBool(map, "loaded") ?? false,
            };
        }
    }
}
