// The wire mapping without a host: JSON reader/writer, request -> envelope, envelope -> response.

using System;
using System.Collections.Generic;
using NUnit.Framework;
using SdxlHost.Client;

namespace SdxlHost.Client.Tests
{
    /// <summary>WireJson: round trips, escapes, numbers, malformed input.</summary>
    [TestFixture]
    public class WireJsonTests
    {
        [Test]
        public void RoundTrip_KeepsEveryKindOfValue()
        {
            string text = "{\"s\":\"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\",\"i\":-42,\"big\":9007199254740993,\"d\":0.1,\"e\":1.5e-7," +
                          "\"t\":true,\"f\":false,\"n\":null,\"a\":[1,[2,{}],[]],\"o\":{\"k\":\"v\"}}";
            var parsed = (IDictionary<string, object>)WireJson.Parse(text);
            Assert.That(parsed["s"], Is.EqualTo("a\"b\\c\n\u00e9\U0001F600"));
            Assert.That(parsed["i"], Is.EqualTo(-42L));
            Assert.That(parsed["big"], Is.EqualTo(9007199254740993L));
            Assert.That(parsed["d"], Is.EqualTo(0.1));
            Assert.That(parsed["e"], Is.EqualTo(1.5e-7));
            Assert.That(parsed["t"], Is.EqualTo(true));
            Assert.That(parsed["n"], Is.Null);
            Assert.That(WireJson.Serialize(WireJson.Parse(WireJson.Serialize(parsed))), Is.EqualTo(WireJson.Serialize(parsed)));
        }

        [Test]
        public void Serialize_WritesOneLineWithEscapedControlCharacters()
        {
            string line = WireJson.Serialize(new Dictionary<string, object> { { "p", "line1\nline2\u0001\u2028" }, { "x", 2.5 } });
            Assert.That(line, Is.EqualTo("{\"p\":\"line1\\nline2\\u0001\\u2028\",\"x\":2.5}"));
        }

        [TestCase("0", 0L)]
        [TestCase("-0.5", -0.5)]
        [TestCase("0e1", 0.0)]
        [TestCase(" 12 ", 12L)]
        [TestCase("-9223372036854775808", long.MinValue)]
        public void Parse_ReadsNumbers(string text, object expected)
        {
            Assert.That(WireJson.Parse(text), Is.EqualTo(expected));
        }

        [Test]
        public void Serialize_RefusesNaN()
        {
            Assert.Throws<WireJsonException>(() => WireJson.Serialize(double.NaN));
        }

        [TestCase("")]
        [TestCase("{")]
        [TestCase("{\"a\":}")]
        [TestCase("[1,]")]
        [TestCase("{\"a\":1} x")]
        [TestCase("\"unterminated")]
        [TestCase("01x")]
        [TestCase("012")]
        [TestCase("-")]
        [TestCase("1.")]
        [TestCase("1e")]
        [TestCase("tru")]
        [TestCase("1e400")]
        [TestCase("-1e400")]
        [TestCase("\"\\x\"")]
        [TestCase("{'a':1}")]
        public void Parse_RejectsMalformedJson(string text)
        {
            Assert.Throws<WireJsonException>(() => WireJson.Parse(text));
        }

        [Test]
        public void Parse_RejectsNestingBeyondTheLimit()
        {
            string deep = new string('[', WireJson.MaxDepth + 1) + new string(']', WireJson.MaxDepth + 1);
            Assert.Throws<WireJsonException>(() => WireJson.Parse(deep));
            string fine = new string('[', WireJson.MaxDepth) + new string(']', WireJson.MaxDepth);
            Assert.That(WireJson.Parse(fine), Is.InstanceOf<List<object>>());
        }
    }

    /// <summary>EnhancedRequestTransformer and EnhancedResponseTransformer.</summary>
    [TestFixture]
    public class TransformerTests
    {
        private static EnhancedSDXLRequest FullRequest()
        {
            var request = new EnhancedSDXLRequest();
            request.Conditioning.Prompt = "a cat";
            request.Conditioning.NegativePrompt = "dog";
            request.Conditioning.LoRAs.Add(new LoRAConfiguration { ModelPath = "/models/loras/pixel_art.safetensors", Weight = 0.7 });
            request.Conditioning.LoRAs.Add(new LoRAConfiguration { ModelPath = "C:\\loras\\ink", Weight = 1.2, ApplyTo = "refiner" });
            request.Conditioning.ControlNets.Add(new ControlNetConfiguration { Type = "canny", ControlImage = "iVBOR", ConditioningScale = 0.5 });
            request.Model.Base = "sdxl_base";
            request.Model.Refiner = "sdxl_refiner";
            request.Scheduler.Type = "Euler a";
            request.Scheduler.Steps = 25;
            request.Scheduler.GuidanceScale = 6.5;
            request.Hyperparameters.Seed = 42;
            request.Hyperparameters.Width = 832;
            request.Hyperparameters.Height = 1216;
            request.Hyperparameters.BatchSize = 3;
            request.Output.Format = "JPEG";
            request.Output.Quality = 88;
            request.Output.SavePath = "runs/today";
            request.PostProcessing = new PostProcessingConfiguration { Upscale = new UpscaleConfiguration { Scale = 4, Model = "RealESRGAN_x4plus" } };
            request.Metadata.Priority = "HIGH";
            request.Metadata.TimeoutSeconds = 120;
            return request;
        }

        private static IDictionary<string, object> Section(IDictionary<string, object> map, string key)
        {
            return (IDictionary<string, object>)map[key];
        }

        [Test]
        public void Envelope_UsesMessageTypeNotAction()
        {
            var envelope = EnhancedRequestTransformer.TransformEnhancedSDXLRequest(FullRequest(), "r-1");
            Assert.That(envelope["message_type"], Is.EqualTo("inference_request"));
            Assert.That(envelope["request_id"], Is.EqualTo("r-1"));
            Assert.That(envelope.ContainsKey("action"), Is.False);
        }

        [Test]
        public void Data_MapsEverySectionOfTheSeedDesign()
        {
            // Through the wire text, as the host will see it.
            string line = WireJson.Serialize(EnhancedRequestTransformer.TransformEnhancedSDXLRequest(FullRequest(), "r-2"));
            var data = Section((IDictionary<string, object>)WireJson.Parse(line), "data");

            Assert.That(data["prompt"], Is.EqualTo("a cat"));
            Assert.That(data["negative_prompt"], Is.EqualTo("dog"));
            Assert.That(Section(data, "models")["base"], Is.EqualTo("sdxl_base"));
            Assert.That(Section(data, "models")["refiner"], Is.EqualTo("sdxl_refiner"));
            Assert.That(Section(data, "models").ContainsKey("vae"), Is.False);
            var hyper = Section(data, "hyperparameters");
            Assert.That(hyper["num_inference_steps"], Is.EqualTo(25L));
            Assert.That(hyper["guidance_scale"], Is.EqualTo(6.5));
            Assert.That(hyper["seed"], Is.EqualTo(42L));
            Assert.That(hyper.ContainsKey("strength"), Is.False, "no init image: strength is not sent (the host would warn)");
            Assert.That(Section(data, "dimensions")["width"], Is.EqualTo(832L));
            Assert.That(Section(data, "dimensions")["height"], Is.EqualTo(1216L));
            Assert.That(data["scheduler"], Is.EqualTo("Euler a"), "aliases are the host's to resolve");

            var lora = Section(data, "lora");
            Assert.That(lora["enabled"], Is.EqualTo(true));
            var loras = (List<object>)lora["models"];
            Assert.That(((IDictionary<string, object>)loras[0])["name"], Is.EqualTo("pixel_art"));
            Assert.That(((IDictionary<string, object>)loras[0])["weight"], Is.EqualTo(0.7));
            Assert.That(((IDictionary<string, object>)loras[1])["name"], Is.EqualTo("ink"));
            Assert.That(((IDictionary<string, object>)loras[0]).ContainsKey("apply_to"), Is.False, "unset: the host's default (base)");
            Assert.That(((IDictionary<string, object>)loras[1])["apply_to"], Is.EqualTo("refiner"));

            var controlnet = Section(data, "controlnet");
            Assert.That(controlnet["enabled"], Is.EqualTo(true));
            Assert.That(controlnet["type"], Is.EqualTo("canny"));
            Assert.That(controlnet["control_image"], Is.EqualTo("iVBOR"));
            Assert.That(controlnet["conditioning_scale"], Is.EqualTo(0.5));

            var output = Section(data, "output");
            Assert.That(output["format"], Is.EqualTo("jpeg"));
            Assert.That(output["quality"], Is.EqualTo(88L));
            Assert.That(output["save_path"], Is.EqualTo("runs/today"));
            Assert.That(Section(output, "upscale")["scale"], Is.EqualTo(4L));
            Assert.That(Section(output, "upscale")["enabled"], Is.EqualTo(true));
            Assert.That(Section(output, "upscale")["model"], Is.EqualTo("RealESRGAN_x4plus"));
            Assert.That(Section(data, "batch")["size"], Is.EqualTo(3L));
            Assert.That(Section(data, "metadata")["priority"], Is.EqualTo("high"));
            Assert.That(Section(data, "metadata")["timeout"], Is.EqualTo(120L));
        }

        [Test]
        public void Data_LeavesUnusedOptionalSectionsOut()
        {
            var request = new EnhancedSDXLRequest();
            request.Conditioning.Prompt = "x";
            var data = EnhancedRequestTransformer.TransformData(request);
            Assert.That(data.ContainsKey("controlnet"), Is.False);
            Assert.That(Section(data, "output").ContainsKey("upscale"), Is.False);
            Assert.That(Section(data, "hyperparameters").ContainsKey("seed"), Is.False);
            Assert.That(Section(data, "lora")["enabled"], Is.EqualTo(false));
            Assert.That(Section(data, "output")["format"], Is.EqualTo("png"));
            Assert.That(Section(data, "output")["quality"], Is.EqualTo(95));
            Assert.That(Section(data, "batch")["size"], Is.EqualTo(1));
            Assert.That(data.ContainsKey("dry_run"), Is.False);
        }

        [Test]
        public void Data_SeveralControlNetsBecomeUnits()
        {
            var request = FullRequest();
            request.Conditioning.ControlNets.Add(new ControlNetConfiguration { Type = "depth", ControlImage = "abc" });
            var controlnet = Section(EnhancedRequestTransformer.TransformData(request), "controlnet");
            var units = (List<object>)controlnet["units"];
            Assert.That(units.Count, Is.EqualTo(2));
            Assert.That(((IDictionary<string, object>)units[1])["type"], Is.EqualTo("depth"));
        }

        [TestCase("DPMSolverMultistepScheduler", "DPMSolverMultistepScheduler")]
        [TestCase(" KDPM2AncestralDiscreteScheduler ", "KDPM2AncestralDiscreteScheduler")]
        [TestCase("LMSDiscrete", "LMSDiscreteScheduler")]
        [TestCase("eulerancestraldiscrete", "EulerAncestralDiscreteScheduler")]
        [TestCase("DDIM", "DDIMScheduler")]
        [TestCase("DPM++ 2M Karras", "DPM++ 2M Karras")]
        [TestCase("Euler a", "Euler a")]
        [TestCase("dpmpp_2m", "dpmpp_2m")]
        [TestCase("", "EulerDiscreteScheduler")]
        [TestCase(null, "EulerDiscreteScheduler")]
        public void MapSchedulerType_CompletesClassNamesAndPassesAliasesToTheHost(string type, string expected)
        {
            Assert.That(EnhancedRequestTransformer.MapSchedulerType(type), Is.EqualTo(expected));
        }

        [Test]
        public void AdditionalData_IsMergedIntoData()
        {
            var request = FullRequest();
            request.AdditionalData["test"] = new Dictionary<string, object> { { "step_ms", 3 } };
            request.DryRun = true;
            var data = EnhancedRequestTransformer.TransformData(request);
            Assert.That(Section(data, "test")["step_ms"], Is.EqualTo(3));
            Assert.That(data["dry_run"], Is.EqualTo(true));
        }

        [Test]
        public void Response_SuccessIsTyped()
        {
            string line = "{\"message_type\":\"response\",\"request_id\":\"r\",\"success\":true,\"warnings\":[\"w1\"]," +
                          "\"data\":{\"generated_images\":[{\"image_path\":\"/o/a.png\",\"format\":\"png\",\"width\":64,\"height\":48," +
                          "\"metadata\":{\"seed\":5,\"steps\":4,\"guidance_scale\":7.5,\"scheduler\":\"DDIMScheduler\"," +
                          "\"model_info\":{\"base_model\":\"b\",\"refiner_model\":\"\",\"vae_model\":\"v\"}}}]," +
                          "\"processing_metrics\":{\"total_time\":1.25,\"queue_time\":0.25,\"inference_time\":1,\"memory_used\":1024,\"device_name\":\"cpu\"}," +
                          "\"stages\":[\"a\",{\"name\":\"b\"}]}}";
            var response = EnhancedResponseTransformer.TransformResponse((IDictionary<string, object>)WireJson.Parse(line));
            Assert.That(response.Success, Is.True);
            Assert.That(response.Warnings, Is.EqualTo(new[] { "w1" }));
            var image = response.GeneratedImages[0];
            Assert.That(image.ImagePath, Is.EqualTo("/o/a.png"));
            Assert.That(image.Width, Is.EqualTo(64));
            Assert.That(image.Metadata.Seed, Is.EqualTo(5));
            Assert.That(image.Metadata.Scheduler, Is.EqualTo("DDIMScheduler"));
            Assert.That(image.Metadata.ModelInfo.VaeModel, Is.EqualTo("v"));
            Assert.That(image.Metadata.ModelInfo.RefinerModel, Is.Null);
            Assert.That(image.ImageBytes, Is.Null);
            Assert.That(response.ProcessingMetrics.TotalTime, Is.EqualTo(1.25));
            Assert.That(response.ProcessingMetrics.InferenceTime, Is.EqualTo(1.0));
            Assert.That(response.ProcessingMetrics.QueueTime, Is.EqualTo(0.25));
            Assert.That(response.ProcessingMetrics.DeviceMemoryUsed, Is.EqualTo(1024.0));
            Assert.That(response.Stages, Is.EqualTo(new[] { "a", "b" }));
        }

        [TestCase("{\"request_id\":\"r\",\"success\":false,\"error\":\"data.dimensions.width: must be a multiple of 8\",\"error_code\":\"VALIDATION_ERROR\"}", "data.dimensions.width")]
        [TestCase("{\"request_id\":\"r\",\"success\":false,\"error\":\"bad\",\"field\":\"data.lora.models[1].weight\",\"error_code\":\"VALIDATION_ERROR\"}", "data.lora.models[1].weight")]
        [TestCase("{\"request_id\":\"r\",\"success\":false,\"error\":{\"message\":\"bad\",\"field\":\"data.seed\"},\"error_code\":\"VALIDATION_ERROR\"}", "data.seed")]
        [TestCase("{\"request_id\":\"r\",\"success\":false,\"error\":\"queue is full\",\"error_code\":\"QUEUE_FULL\"}", null)]
        public void Response_ErrorNamesItsField(string line, string field)
        {
            var envelope = (IDictionary<string, object>)WireJson.Parse(line);
            var response = EnhancedResponseTransformer.TransformResponse(envelope);
            Assert.That(response.Success, Is.False);
            Assert.That(response.ErrorField, Is.EqualTo(field));
            var error = EnhancedResponseTransformer.ToException(envelope, response);
            Assert.That(error.Field, Is.EqualTo(field));
            Assert.That(error.ErrorCode, Is.EqualTo(response.ErrorCode));
            Assert.That(error.RequestId, Is.EqualTo("r"));
        }

        [Test]
        public void Progress_IsTyped()
        {
            var envelope = (IDictionary<string, object>)WireJson.Parse(
                "{\"message_type\":\"progress\",\"request_id\":\"r\",\"data\":{\"stage\":\"denoise\",\"step\":3,\"total_steps\":12,\"elapsed_s\":0.5}}");
            var progress = EnhancedResponseTransformer.TransformProgress(envelope);
            Assert.That(progress.Stage, Is.EqualTo("denoise"));
            Assert.That(progress.Step, Is.EqualTo(3));
            Assert.That(progress.TotalSteps, Is.EqualTo(12));
            Assert.That(progress.Fraction, Is.EqualTo(0.25));
            Assert.That(progress.ElapsedSeconds, Is.EqualTo(0.5));
        }

        [Test]
        public void Progress_StageStartAndDetailAreTyped()
        {
            var start = EnhancedResponseTransformer.TransformProgress((IDictionary<string, object>)WireJson.Parse(
                "{\"message_type\":\"progress\",\"request_id\":\"r\",\"data\":{\"stage\":\"vae_decode\",\"step\":0,\"total_steps\":0,\"elapsed_s\":1.0}}"));
            Assert.That(start.IsStageStart, Is.True);
            Assert.That(start.Detail, Is.Null);
            Assert.That(start.Fraction, Is.EqualTo(0.0));
            var inside = EnhancedResponseTransformer.TransformProgress((IDictionary<string, object>)WireJson.Parse(
                "{\"message_type\":\"progress\",\"request_id\":\"r\",\"data\":{\"stage\":\"vae_decode\",\"step\":0,\"total_steps\":0,\"elapsed_s\":2.0,"
                + "\"detail\":{\"part\":\"vae_decode\",\"index\":3,\"count\":5}}}"));
            Assert.That(inside.IsStageStart, Is.False);
            Assert.That(inside.Detail.Part, Is.EqualTo("vae_decode"));
            Assert.That(inside.Detail.Index, Is.EqualTo(3));
            Assert.That(inside.Detail.Count, Is.EqualTo(5));
        }

        [Test]
        public void Capabilities_AcceptPluginListsAndMaps()
        {
            var fromList = EnhancedResponseTransformer.TransformCapabilities((IDictionary<string, object>)WireJson.Parse(
                "{\"plugins\":[{\"name\":\"p\",\"version\":\"1.0\",\"state\":\"failed\",\"reason\":\"abi\",\"provides\":[\"x\"]}],\"schedulers\":[\"DDIMScheduler\"],\"limits\":{\"max_width\":2048}}"));
            Assert.That(fromList.FindPlugin("p").Reason, Is.EqualTo("abi"));
            Assert.That(fromList.FindPlugin("p").Provides, Is.EqualTo(new[] { "x" }));
            Assert.That(fromList.Schedulers, Is.EqualTo(new[] { "DDIMScheduler" }));
            Assert.That(fromList.Limits["max_width"], Is.EqualTo(2048L));
            var fromMap = EnhancedResponseTransformer.TransformCapabilities((IDictionary<string, object>)WireJson.Parse(
                "{\"plugins\":{\"q\":{\"state\":\"loaded\"}}}"));
            Assert.That(fromMap.FindPlugin("q").State, Is.EqualTo("loaded"));
        }

        [Test]
        public void ModelList_IsFlattenedWithKinds()
        {
            var models = EnhancedResponseTransformer.TransformModelList((IDictionary<string, object>)WireJson.Parse(
                "{\"checkpoints\":[{\"name\":\"base\",\"path\":\"/m/base.safetensors\",\"size_bytes\":10,\"loaded\":true}],\"loras\":[]}"));
            Assert.That(models.Count, Is.EqualTo(1));
            Assert.That(models[0].Kind, Is.EqualTo("checkpoints"));
            Assert.That(models[0].SizeBytes, Is.EqualTo(10));
            Assert.That(models[0].Loaded, Is.True);
        }
    }
}
