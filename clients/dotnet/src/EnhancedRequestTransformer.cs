// C# request model -> the host's wire envelope (the seed design's TransformEnhancedSDXLRequest,
// with `message_type`, never the legacy `action`). The one place the C# names meet wire names.
// Deliberate differences from the seed: no `worker_type`, `model_name`, `batch.parallel` or
// `metadata.request_id` (the host plans stages from plugins and reads models.base; it accepts
// those fields from older clients but needs none); optional sections (controlnet,
// output.upscale, models.base when unset) are left out instead of sent as null; and `strength`
// goes only with an init image (the host warns about a strength that text-to-image ignores).
// Also the envelopes of the `upscale` and `preprocess` messages.
// Thread-safety: stateless.

using System;
using System.Collections.Generic;

namespace SdxlHost.Client
{
    /// <summary>Builds the wire envelope of an inference request.</summary>
    public static class EnhancedRequestTransformer
    {
        /// <summary>Message type of a generation on the wire.</summary>
        public const string InferenceMessageType = "inference_request";

        /// <summary>Message type of an upscale of a sent image.</summary>
        public const string UpscaleMessageType = "upscale";

        /// <summary>Message type of a preprocessor run.</summary>
        public const string PreprocessMessageType = "preprocess";

        private static readonly Dictionary<string, string> kSchedulerClasses = BuildSchedulerClasses();

        /// <summary>
        /// The whole envelope: <c>{"message_type":"inference_request","request_id":..,"data":{..}}</c>,
        /// ready for <see cref="WireJson.Serialize"/>. <paramref name="defaults"/> fill what the request leaves unset.
        /// </summary>
        public static Dictionary<string, object> TransformEnhancedSDXLRequest(EnhancedSDXLRequest request, string requestId,
                                                                              GenerationDefaults defaults = null)
        {
            if (request == null) throw new ArgumentNullException("request");
            return Envelope(InferenceMessageType, requestId, TransformData(request, defaults));
        }

        /// <summary>The wire's <c>data</c> object for <paramref name="request"/> (<paramref name="defaults"/> fill what it leaves unset).</summary>
        public static Dictionary<string, object> TransformData(EnhancedSDXLRequest request, GenerationDefaults defaults = null)
        {
            if (request == null) throw new ArgumentNullException("request");
            var conditioning = request.Conditioning ?? new ConditioningConfiguration();
            var hyper = request.Hyperparameters ?? new HyperparameterConfiguration();
            var scheduler = request.Scheduler ?? new SchedulerConfiguration();

            var data = new Dictionary<string, object>();
            data["prompt"] = conditioning.Prompt;
            AddIfSet(data, "prompt_2", conditioning.Prompt2);
            AddIfSet(data, "negative_prompt", conditioning.NegativePrompt);
            AddIfSet(data, "negative_prompt_2", conditioning.NegativePrompt2);
            data["models"] = TransformModels(request.Model ?? new SDXLModelConfiguration());
            data["hyperparameters"] = TransformHyperparameters(scheduler, hyper);
            var dimensions = new Dictionary<string, object>();
            int? width = hyper.Width ?? (defaults == null ? null : defaults.Width);
            int? height = hyper.Height ?? (defaults == null ? null : defaults.Height);
            if (width.HasValue) dimensions["width"] = width.Value;
            if (height.HasValue) dimensions["height"] = height.Value;
            if (dimensions.Count > 0) data["dimensions"] = dimensions;
            data["scheduler"] = MapSchedulerType(scheduler.Type);
            if (scheduler.Options != null && scheduler.Options.Count > 0) data["scheduler_options"] = scheduler.Options;
            data["lora"] = TransformLoRAs(conditioning.LoRAs);
            var controlnet = TransformControlNets(conditioning.ControlNets, conditioning.ControlNetGuessMode);
            if (controlnet != null) data["controlnet"] = controlnet;
            if (hyper.InitImage != null) data["init_image"] = hyper.InitImage.Base64;
            var output = TransformOutput(request.Output ?? new OutputConfiguration());
            var upscale = request.PostProcessing == null ? null : TransformUpscale(request.PostProcessing.Upscale, false);
            if (upscale != null) output["upscale"] = upscale;
            data["output"] = output;
            data["batch"] = new Dictionary<string, object> { { "size", hyper.BatchSize ?? 1 } };
            data["metadata"] = TransformMetadata(request.Metadata ?? new MetadataConfiguration());
            if (request.DryRun) data["dry_run"] = true;
            if (request.AdditionalData != null)
                foreach (var pair in request.AdditionalData) data[pair.Key] = pair.Value;
            return data;
        }

        /// <summary>The envelope of an <c>upscale</c> message (the upscale is sent enabled).</summary>
        public static Dictionary<string, object> TransformUpscaleRequest(UpscaleRequest request, string requestId)
        {
            if (request == null) throw new ArgumentNullException("request");
            if (request.Image == null) throw new ArgumentException("UpscaleRequest.Image is required", "request");
            var data = new Dictionary<string, object>
            {
                { "image", request.Image.Base64 },
                { "upscale", TransformUpscale(request.Upscale ?? new UpscaleConfiguration(), true) },
                { "output", TransformOutput(request.Output ?? new OutputConfiguration()) },
                { "metadata", TransformMetadata(request.Metadata ?? new MetadataConfiguration()) },
            };
            return Envelope(UpscaleMessageType, requestId, data);
        }

        /// <summary>The envelope of a <c>preprocess</c> message.</summary>
        public static Dictionary<string, object> TransformPreprocessRequest(PreprocessRequest request, string requestId)
        {
            if (request == null) throw new ArgumentNullException("request");
            if (request.Image == null) throw new ArgumentException("PreprocessRequest.Image is required", "request");
            if (request.Preprocessor == null) throw new ArgumentException("PreprocessRequest.Preprocessor is required", "request");
            var data = new Dictionary<string, object>
            {
                { "preprocessor", TransformPreprocessor(request.Preprocessor) },
                { "image", request.Image.Base64 },
            };
            return Envelope(PreprocessMessageType, requestId, data);
        }

        /// <summary><c>{"message_type": type, "request_id": id, "data": data}</c>.</summary>
        public static Dictionary<string, object> Envelope(string messageType, string requestId, IDictionary<string, object> data)
        {
            if (string.IsNullOrEmpty(messageType)) throw new ArgumentException("a message type is required", "messageType");
            if (string.IsNullOrEmpty(requestId)) throw new ArgumentException("a request id is required", "requestId");
            return new Dictionary<string, object>
            {
                { "message_type", messageType },
                { "request_id", requestId },
                { "data", data ?? new Dictionary<string, object>() },
            };
        }

        /// <summary>The wire name of a model kind: its folder under models_root ("checkpoints", "loras", "controlnet", "vae", "upscalers").</summary>
        public static string ModelKindToWire(ModelKind kind)
        {
            switch (kind)
            {
                case ModelKind.Checkpoints: return "checkpoints";
                case ModelKind.Loras: return "loras";
                case ModelKind.ControlNet: return "controlnet";
                case ModelKind.Vae: return "vae";
                case ModelKind.Upscalers: return "upscalers";
                default: throw new ArgumentOutOfRangeException("kind", kind, "not a model kind");
            }
        }

        /// <summary>
        /// The wire's scheduler name: a diffusers class name passes through, a class name without its
        /// "Scheduler" suffix gets it back (any case: "EulerAncestralDiscrete"), and anything else is
        /// sent as written: the host's schedulers plugin resolves A1111 and ComfyUI names ("Euler a",
        /// "DPM++ 2M Karras", "dpmpp_2m") and answers VALIDATION_ERROR naming data.scheduler for an
        /// unknown one. Null or empty: EulerDiscreteScheduler.
        /// </summary>
        public static string MapSchedulerType(string type)
        {
            if (string.IsNullOrWhiteSpace(type)) return "EulerDiscreteScheduler";
            string trimmed = type.Trim();
            string className;
            if (kSchedulerClasses.TryGetValue(trimmed, out className)) return className;
            if (kSchedulerClasses.TryGetValue(trimmed + "Scheduler", out className)) return className;
            return trimmed;
        }

        /// <summary>The LoRA name the host resolves under models_root/loras: the file name without a .safetensors extension.</summary>
        public static string ExtractLoRAName(string modelPath)
        {
            if (string.IsNullOrEmpty(modelPath)) return modelPath;
            string name = modelPath.TrimEnd('/', '\\');
            int slash = Math.Max(name.LastIndexOf('/'), name.LastIndexOf('\\'));
            if (slash >= 0) name = name.Substring(slash + 1);
            if (name.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
                name = name.Substring(0, name.Length - ".safetensors".Length);
            return name;
        }

        private static void AddIfSet(Dictionary<string, object> map, string key, string value)
        {
            if (value != null) map[key] = value;
        }

        private static Dictionary<string, object> TransformModels(SDXLModelConfiguration model)
        {
            var models = new Dictionary<string, object>();
            AddIfSet(models, "base", model.Base);
            AddIfSet(models, "refiner", model.Refiner);
            AddIfSet(models, "vae", model.Vae);
            return models;
        }

        /// <summary>
        /// Steps and guidance come from the scheduler section (as in the seed). Strength goes only with
        /// an init image (the seed's 0.8 default then), or when the caller set it explicitly (the host
        /// then warns that it is ignored); the other optional settings only when set.
        /// </summary>
        private static Dictionary<string, object> TransformHyperparameters(SchedulerConfiguration scheduler, HyperparameterConfiguration hyper)
        {
            var result = new Dictionary<string, object>
            {
                { "num_inference_steps", scheduler.Steps },
                { "guidance_scale", scheduler.GuidanceScale },
            };
            if (hyper.InitImage != null) result["strength"] = hyper.Strength ?? 0.8;
            else if (hyper.Strength.HasValue) result["strength"] = hyper.Strength.Value;
            if (hyper.Seed.HasValue) result["seed"] = hyper.Seed.Value;
            if (hyper.DenoisingEnd.HasValue) result["denoising_end"] = hyper.DenoisingEnd.Value;
            if (hyper.AestheticScore.HasValue) result["aesthetic_score"] = hyper.AestheticScore.Value;
            if (hyper.NegativeAestheticScore.HasValue) result["negative_aesthetic_score"] = hyper.NegativeAestheticScore.Value;
            if (hyper.GuidanceRescale.HasValue) result["guidance_rescale"] = hyper.GuidanceRescale.Value;
            if (hyper.ClipSkip.HasValue) result["clip_skip"] = hyper.ClipSkip.Value;
            return result;
        }

        private static Dictionary<string, object> TransformLoRAs(List<LoRAConfiguration> loras)
        {
            var models = new List<object>();
            if (loras != null)
                foreach (var lora in loras)
                {
                    if (lora == null) continue;
                    var model = new Dictionary<string, object> { { "name", ExtractLoRAName(lora.ModelPath) }, { "weight", lora.Weight } };
                    if (!string.IsNullOrEmpty(lora.ApplyTo)) model["apply_to"] = lora.ApplyTo;  // absent: "base"
                    models.Add(model);
                }
            return new Dictionary<string, object> { { "enabled", models.Count > 0 }, { "models", models } };
        }

        /// <summary>
        /// One unit: the seed's flat object {enabled, type, model, control_image, conditioning_scale,
        /// preprocessor, ...}. Several: {enabled: true, units: [ one object per unit ]}. None: null.
        /// </summary>
        private static Dictionary<string, object> TransformControlNets(List<ControlNetConfiguration> controlNets, bool guessMode)
        {
            var units = new List<ControlNetConfiguration>();
            if (controlNets != null) units.AddRange(controlNets.FindAll(unit => unit != null));
            if (units.Count == 0) return null;
            Dictionary<string, object> result;
            if (units.Count == 1)
            {
                result = TransformControlNetUnit(units[0]);
                result["enabled"] = true;
            }
            else
            {
                var wireUnits = new List<object>();
                foreach (var unit in units) wireUnits.Add(TransformControlNetUnit(unit));
                result = new Dictionary<string, object> { { "enabled", true }, { "units", wireUnits } };
            }
            if (guessMode) result["guess_mode"] = true;
            return result;
        }

        private static Dictionary<string, object> TransformControlNetUnit(ControlNetConfiguration unit)
        {
            var result = new Dictionary<string, object>();
            AddIfSet(result, "type", unit.Type);
            AddIfSet(result, "model", unit.Model);
            if (unit.ControlImage != null) result["control_image"] = unit.ControlImage.Base64;
            result["conditioning_scale"] = unit.ConditioningScale;
            if (unit.GuidanceStart.HasValue) result["control_guidance_start"] = unit.GuidanceStart.Value;
            if (unit.GuidanceEnd.HasValue) result["control_guidance_end"] = unit.GuidanceEnd.Value;
            if (unit.Preprocessor != null) result["preprocessor"] = TransformPreprocessor(unit.Preprocessor);
            return result;
        }

        /// <summary><c>{"name": NAME, option: value, ...}</c>; an option named "name" is refused (it would replace the name).</summary>
        private static Dictionary<string, object> TransformPreprocessor(PreprocessorConfiguration preprocessor)
        {
            var result = new Dictionary<string, object> { { "name", preprocessor.Name } };
            if (preprocessor.Options != null)
                foreach (var pair in preprocessor.Options)
                {
                    if (pair.Key == "name" || pair.Key == "type")
                        throw new ArgumentException("a preprocessor option may not be called '" + pair.Key + "': set PreprocessorConfiguration.Name instead");
                    result[pair.Key] = pair.Value;
                }
            return result;
        }

        private static Dictionary<string, object> TransformOutput(OutputConfiguration output)
        {
            var result = new Dictionary<string, object>
            {
                { "format", string.IsNullOrEmpty(output.Format) ? "png" : output.Format.ToLowerInvariant() },
                { "quality", output.Quality ?? 95 },
            };
            AddIfSet(result, "save_path", output.SavePath);
            if (output.ReturnBase64) result["return_base64"] = true;
            return result;
        }

        /// <summary>The upscale object, or null when it is off (and not <paramref name="force"/>d on, as the upscale message needs).</summary>
        private static Dictionary<string, object> TransformUpscale(UpscaleConfiguration upscale, bool force)
        {
            if (upscale == null || (!force && !upscale.IsEnabled)) return null;
            var result = new Dictionary<string, object> { { "enabled", true } };
            if (upscale.Method.HasValue) result["method"] = upscale.Method.Value == UpscaleMethod.Lanczos ? "lanczos" : "model";
            AddIfSet(result, "model", upscale.Model);
            if (upscale.Scale.HasValue) result["scale"] = upscale.Scale.Value;
            if (upscale.TileSize.HasValue) result["tile_size"] = upscale.TileSize.Value;
            if (upscale.TileOverlap.HasValue) result["tile_overlap"] = upscale.TileOverlap.Value;
            return result;
        }

        private static Dictionary<string, object> TransformMetadata(MetadataConfiguration metadata)
        {
            return new Dictionary<string, object>
            {
                { "priority", string.IsNullOrEmpty(metadata.Priority) ? "normal" : metadata.Priority.ToLowerInvariant() },
                { "timeout", metadata.TimeoutSeconds },
                { "tags", metadata.Tags ?? new List<string>() },
            };
        }

        private static Dictionary<string, string> BuildSchedulerClasses()
        {
            var classes = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            string[] names =
            {
                "DPMSolverMultistepScheduler", "DDIMScheduler", "EulerDiscreteScheduler",
                "EulerAncestralDiscreteScheduler", "DPMSolverSinglestepScheduler", "KDPM2DiscreteScheduler",
                "KDPM2AncestralDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
                "UniPCMultistepScheduler",
            };
            foreach (string name in names) classes[name] = name;
            return classes;
        }
    }
}
