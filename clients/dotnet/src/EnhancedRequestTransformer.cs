// C# request model -> the host's wire envelope (the seed design's TransformEnhancedSDXLRequest,
// with `message_type`, never the legacy `action`). The one place the C# names meet wire names.
// Deliberate differences from the seed: no `worker_type`, `model_name`, `batch.parallel` or
// `metadata.request_id` (the host plans stages from plugins and reads models.base; it accepts
// those fields from older clients but needs none), and optional sections (controlnet,
// output.upscale, models.base when unset) are left out instead of sent as null.
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

        private static readonly Dictionary<string, string> kSchedulerClasses = BuildSchedulerClasses();

        /// <summary>
        /// The whole envelope: <c>{"message_type":"inference_request","request_id":..,"data":{..}}</c>,
        /// ready for <see cref="WireJson.Serialize"/>.
        /// </summary>
        public static Dictionary<string, object> TransformEnhancedSDXLRequest(EnhancedSDXLRequest request, string requestId)
        {
            if (request == null) throw new ArgumentNullException("request");
            if (string.IsNullOrEmpty(requestId)) throw new ArgumentException("a request id is required", "requestId");
            return new Dictionary<string, object>
            {
                { "message_type", InferenceMessageType },
                { "request_id", requestId },
                { "data", TransformData(request) },
            };
        }

        /// <summary>The wire's <c>data</c> object for <paramref name="request"/>.</summary>
        public static Dictionary<string, object> TransformData(EnhancedSDXLRequest request)
        {
            if (request == null) throw new ArgumentNullException("request");
            var conditioning = request.Conditioning ?? new Conditioning();
            var hyper = request.Hyperparameters ?? new Hyperparameters();
            var scheduler = request.Scheduler ?? new SchedulerSettings();

            var data = new Dictionary<string, object>();
            data["prompt"] = conditioning.Prompt;
            AddIfSet(data, "prompt_2", conditioning.Prompt2);
            AddIfSet(data, "negative_prompt", conditioning.NegativePrompt);
            AddIfSet(data, "negative_prompt_2", conditioning.NegativePrompt2);
            data["models"] = TransformModels(request.Model ?? new ModelSelection());
            data["hyperparameters"] = TransformHyperparameters(scheduler, hyper);
            data["dimensions"] = new Dictionary<string, object> { { "width", hyper.Width }, { "height", hyper.Height } };
            data["scheduler"] = MapSchedulerType(scheduler.Type);
            data["lora"] = TransformLoRAs(conditioning.LoRAs);
            var controlnet = TransformControlNets(conditioning.ControlNets);
            if (controlnet != null) data["controlnet"] = controlnet;
            AddIfSet(data, "init_image", hyper.InitImage);
            data["output"] = TransformOutput(request.Output ?? new OutputSettings(), request.PostProcessing);
            data["batch"] = new Dictionary<string, object> { { "size", hyper.BatchSize ?? 1 } };
            data["metadata"] = TransformMetadata(request.Metadata ?? new RequestMetadata());
            if (request.DryRun) data["dry_run"] = true;
            if (request.AdditionalData != null)
                foreach (var pair in request.AdditionalData) data[pair.Key] = pair.Value;
            return data;
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

        private static Dictionary<string, object> TransformModels(ModelSelection model)
        {
            var models = new Dictionary<string, object>();
            AddIfSet(models, "base", model.Base);
            AddIfSet(models, "refiner", model.Refiner);
            AddIfSet(models, "vae", model.Vae);
            return models;
        }

        private static Dictionary<string, object> TransformHyperparameters(SchedulerSettings scheduler, Hyperparameters hyper)
        {
            var result = new Dictionary<string, object>
            {
                { "num_inference_steps", scheduler.Steps },
                { "guidance_scale", scheduler.GuidanceScale },
                { "strength", hyper.Strength ?? 0.8 },
            };
            if (hyper.Seed.HasValue) result["seed"] = hyper.Seed.Value;
            return result;
        }

        private static Dictionary<string, object> TransformLoRAs(List<LoRAConfig> loras)
        {
            var models = new List<object>();
            if (loras != null)
                foreach (var lora in loras)
                    models.Add(new Dictionary<string, object> { { "name", ExtractLoRAName(lora.ModelPath) }, { "weight", lora.Weight } });
            return new Dictionary<string, object> { { "enabled", models.Count > 0 }, { "models", models } };
        }

        /// <summary>
        /// One unit: the seed's flat object {enabled, type, model, control_image, conditioning_scale,
        /// preprocessor, ...}. Several: {enabled: true, units: [ one object per unit ]}. None: null.
        /// </summary>
        private static Dictionary<string, object> TransformControlNets(List<ControlNetConfig> controlNets)
        {
            if (controlNets == null || controlNets.Count == 0) return null;
            if (controlNets.Count == 1)
            {
                var single = TransformControlNetUnit(controlNets[0]);
                single["enabled"] = true;
                return single;
            }
            var units = new List<object>();
            foreach (var unit in controlNets) units.Add(TransformControlNetUnit(unit));
            return new Dictionary<string, object> { { "enabled", true }, { "units", units } };
        }

        private static Dictionary<string, object> TransformControlNetUnit(ControlNetConfig unit)
        {
            var result = new Dictionary<string, object>();
            AddIfSet(result, "type", unit.Type);
            AddIfSet(result, "model", unit.Model);
            AddIfSet(result, "control_image", unit.ControlImage);
            result["conditioning_scale"] = unit.ConditioningScale;
            if (unit.GuidanceStart.HasValue) result["control_guidance_start"] = unit.GuidanceStart.Value;
            if (unit.GuidanceEnd.HasValue) result["control_guidance_end"] = unit.GuidanceEnd.Value;
            if (unit.Preprocessor != null) result["preprocessor"] = unit.Preprocessor;
            return result;
        }

        private static Dictionary<string, object> TransformOutput(OutputSettings output, PostProcessing post)
        {
            var result = new Dictionary<string, object>
            {
                { "format", string.IsNullOrEmpty(output.Format) ? "png" : output.Format.ToLowerInvariant() },
                { "quality", output.Quality ?? 95 },
            };
            AddIfSet(result, "save_path", output.SavePath);
            if (output.ReturnBase64) result["return_base64"] = true;
            var upscale = TransformUpscale(post);
            if (upscale != null) result["upscale"] = upscale;
            return result;
        }

        private static Dictionary<string, object> TransformUpscale(PostProcessing post)
        {
            if (post == null || post.Upscale == null || !post.Upscale.Enabled) return null;
            var result = new Dictionary<string, object> { { "enabled", true }, { "factor", post.Upscale.Factor } };
            AddIfSet(result, "model", post.Upscale.Model);
            return result;
        }

        private static Dictionary<string, object> TransformMetadata(RequestMetadata metadata)
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
