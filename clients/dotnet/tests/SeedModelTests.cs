// The seed design's request model and service contract, without a host: the names compile as the
// seed writes them, nested configurations exist on a new request, every feature maps to its wire
// field, nothing is sent that the host would warn about, error codes map both ways, and the
// service turns host errors into Success = false (through ISdxlHostClient, with a test double).

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using SdxlHost.Client;

namespace SdxlHost.Client.Tests
{
    /// <summary>The seed's names and the wire mapping of every feature.</summary>
    [TestFixture]
    public class SeedModelTests
    {
        private static IDictionary<string, object> Section(IDictionary<string, object> map, string key)
        {
            return (IDictionary<string, object>)map[key];
        }

        /// <summary>The data object as the host will read it (through the wire text).</summary>
        private static IDictionary<string, object> WireData(EnhancedSDXLRequest request)
        {
            string line = WireJson.Serialize(EnhancedRequestTransformer.TransformEnhancedSDXLRequest(request, "r"));
            return Section((IDictionary<string, object>)WireJson.Parse(line), "data");
        }

        [Test]
        public void TheSeedsObjectInitializer_CompilesAndMaps()
        {
            var request = new EnhancedSDXLRequest
            {
                Conditioning = new ConditioningConfiguration
                {
                    Prompt = "Test prompt",
                    NegativePrompt = "blurry",
                    LoRAs = new List<LoRAConfiguration>
                    {
                        new LoRAConfiguration { ModelPath = "test_lora", Weight = 0.8 }
                    },
                    ControlNets = new List<ControlNetConfiguration>()
                },
                Model = new SDXLModelConfiguration { Base = "cyberrealisticPony_v125", Refiner = "sdxl_refiner", Vae = "sdxl_vae" },
                Scheduler = new SchedulerConfiguration { Type = "DPMSolverMultistep", Steps = 20, GuidanceScale = 6.0 },
                Hyperparameters = new HyperparameterConfiguration { Seed = 1, Strength = null, Width = 832, Height = 1216, BatchSize = 2 },
                Output = new OutputConfiguration { Format = "PNG", Quality = 90, SavePath = "runs" },
                PostProcessing = new PostProcessingConfiguration()
            };
            var data = WireData(request);
            Assert.That(data["prompt"], Is.EqualTo("Test prompt"));
            Assert.That(Section(data, "models")["base"], Is.EqualTo("cyberrealisticPony_v125"));
            Assert.That(Section(data, "models")["vae"], Is.EqualTo("sdxl_vae"));
            Assert.That(data["scheduler"], Is.EqualTo("DPMSolverMultistepScheduler"));
            Assert.That(Section(data, "hyperparameters")["num_inference_steps"], Is.EqualTo(20L));
            var lora = (IDictionary<string, object>)((List<object>)Section(data, "lora")["models"])[0];
            Assert.That(lora["name"], Is.EqualTo("test_lora"));
            Assert.That(lora["weight"], Is.EqualTo(0.8));
            Assert.That(Section(data, "batch")["size"], Is.EqualTo(2L));
            Assert.That(data.ContainsKey("controlnet"), Is.False, "an empty ControlNet list sends none");
            Assert.That(Section(data, "output").ContainsKey("upscale"), Is.False);
        }

        [Test]
        public void ANewRequest_HasEveryNestedConfiguration()
        {
            var request = new EnhancedSDXLRequest();
            request.Scheduler.Steps = 20;
            request.Hyperparameters.Seed = 5;
            request.Conditioning.LoRAs.Add(new LoRAConfiguration { ModelPath = "a" });
            request.Conditioning.ControlNets.Add(new ControlNetConfiguration { Model = "m", ControlImage = "iVBOR" });
            request.Model.Base = "b";
            request.Output.ReturnBase64 = true;
            request.PostProcessing.Upscale.Scale = 2;
            request.Metadata.Priority = "low";
            var data = WireData(request);
            Assert.That(Section(data, "hyperparameters")["num_inference_steps"], Is.EqualTo(20L));
            Assert.That(Section(Section(data, "output"), "upscale")["scale"], Is.EqualTo(2L));
        }

        [Test]
        public void APlainTextToImageRequest_SendsNoStrengthAndNoOptionalSection()
        {
            var request = new EnhancedSDXLRequest();
            request.Conditioning.Prompt = "x";
            request.Hyperparameters.Strength = null;
            var data = WireData(request);
            var hyper = Section(data, "hyperparameters");
            Assert.That(hyper.Keys, Is.EquivalentTo(new[] { "num_inference_steps", "guidance_scale" }));
            foreach (string absent in new[] { "init_image", "controlnet", "scheduler_options", "dry_run", "negative_prompt", "dimensions" })
                Assert.That(data.ContainsKey(absent), Is.False, absent);
            Assert.That(Section(data, "output").ContainsKey("upscale"), Is.False);
        }

        [Test]
        public void GenerationDefaults_FillOnlyWhatTheRequestLeavesUnset()
        {
            var request = new EnhancedSDXLRequest();
            request.Conditioning.Prompt = "x";
            request.Hyperparameters.Height = 512;
            var defaults = new GenerationDefaults { Width = 64, Height = 72 };
            var data = EnhancedRequestTransformer.TransformData(request, defaults);
            Assert.That(Section(data, "dimensions")["width"], Is.EqualTo(64));
            Assert.That(Section(data, "dimensions")["height"], Is.EqualTo(512), "the request's own value wins");
            Assert.That(request.Hyperparameters.Width, Is.Null, "the request is not changed");
        }

        [Test]
        public void InitImage_FromFileOrBytes_SendsBase64AndTheSeedsStrength()
        {
            byte[] png = { 0x89, (byte)'P', (byte)'N', (byte)'G', 1, 2, 3 };
            string file = Path.GetTempFileName();
            try
            {
                File.WriteAllBytes(file, png);
                var request = new EnhancedSDXLRequest();
                request.Conditioning.Prompt = "x";
                request.Hyperparameters.InitImage = ImageInput.FromFile(file);
                var data = WireData(request);
                Assert.That(Convert.FromBase64String((string)data["init_image"]), Is.EqualTo(png));
                Assert.That(Section(data, "hyperparameters")["strength"], Is.EqualTo(0.8), "the seed's default with an init image");

                request.Hyperparameters.InitImage = png;  // bytes, through the implicit conversion
                request.Hyperparameters.Strength = 0.35;
                data = WireData(request);
                Assert.That(Convert.FromBase64String((string)data["init_image"]), Is.EqualTo(png));
                Assert.That(Section(data, "hyperparameters")["strength"], Is.EqualTo(0.35));
            }
            finally
            {
                File.Delete(file);
            }
            Assert.Throws<FileNotFoundException>(() => ImageInput.FromFile(file));
            Assert.Throws<ArgumentException>(() => ImageInput.FromBytes(new byte[0]));
        }

        [Test]
        public void RefinerSettings_MapToTheirHyperparameters()
        {
            var request = new EnhancedSDXLRequest();
            request.Conditioning.Prompt = "x";
            request.Model.Refiner = "refiner";
            request.Hyperparameters.DenoisingEnd = 0.75;
            request.Hyperparameters.AestheticScore = 6.5;
            request.Hyperparameters.NegativeAestheticScore = 2.0;
            request.Hyperparameters.GuidanceRescale = 0.7;
            request.Hyperparameters.ClipSkip = 1;
            var data = WireData(request);
            var hyper = Section(data, "hyperparameters");
            Assert.That(Section(data, "models")["refiner"], Is.EqualTo("refiner"));
            Assert.That(hyper["denoising_end"], Is.EqualTo(0.75));
            Assert.That(hyper["aesthetic_score"], Is.EqualTo(6.5));
            Assert.That(hyper["negative_aesthetic_score"], Is.EqualTo(2.0));
            Assert.That(hyper["guidance_rescale"], Is.EqualTo(0.7));
            Assert.That(hyper["clip_skip"], Is.EqualTo(1L));
        }

        [Test]
        public void Upscale_IsOffUntilAskedFor_AndSendsTheUpscalersKeys()
        {
            var upscale = new UpscaleConfiguration();
            Assert.That(upscale.IsEnabled, Is.False);
            upscale.Model = "RealESRGAN_x4plus.pth";
            Assert.That(upscale.IsEnabled, Is.True);
            upscale.Enabled = false;
            Assert.That(upscale.IsEnabled, Is.False, "an explicit false wins");

            var request = new EnhancedSDXLRequest();
            request.Conditioning.Prompt = "x";
            request.PostProcessing.Upscale = new UpscaleConfiguration { Method = UpscaleMethod.Lanczos, Scale = 1.5, TileSize = 128, TileOverlap = 8 };
            var wire = Section(Section(WireData(request), "output"), "upscale");
            Assert.That(wire["enabled"], Is.EqualTo(true));
            Assert.That(wire["method"], Is.EqualTo("lanczos"));
            Assert.That(wire["scale"], Is.EqualTo(1.5));
            Assert.That(wire["tile_size"], Is.EqualTo(128L));
            Assert.That(wire["tile_overlap"], Is.EqualTo(8L));
            Assert.That(wire.ContainsKey("model"), Is.False);
        }

        [Test]
        public void ControlNetUnits_CarryPreprocessorOptionsAndGuessMode()
        {
            var request = new EnhancedSDXLRequest();
            request.Conditioning.Prompt = "x";
            request.Conditioning.ControlNetGuessMode = true;
            request.Conditioning.ControlNets.Add(new ControlNetConfiguration
            {
                Model = "controlnet-canny", ControlImage = ImageInput.FromBytes(new byte[] { 1, 2 }), ConditioningScale = 0.6,
                GuidanceStart = 0.1, GuidanceEnd = 0.9, Preprocessor = PreprocessorConfiguration.Canny(50, 150),
            });
            request.Conditioning.ControlNets.Add(new ControlNetConfiguration { Type = "depth", ControlImage = "abc" });
            var controlnet = Section(WireData(request), "controlnet");
            Assert.That(controlnet["enabled"], Is.EqualTo(true));
            Assert.That(controlnet["guess_mode"], Is.EqualTo(true));
            var units = ((List<object>)controlnet["units"]).Cast<IDictionary<string, object>>().ToList();
            Assert.That(units[0]["model"], Is.EqualTo("controlnet-canny"));
            Assert.That(units[0]["control_image"], Is.EqualTo(Convert.ToBase64String(new byte[] { 1, 2 })));
            Assert.That(units[0]["control_guidance_start"], Is.EqualTo(0.1));
            Assert.That(units[0]["control_guidance_end"], Is.EqualTo(0.9));
            var preprocessor = Section(units[0], "preprocessor");
            Assert.That(preprocessor["name"], Is.EqualTo("canny"));
            Assert.That(preprocessor["low_threshold"], Is.EqualTo(50L));
            Assert.That(preprocessor["high_threshold"], Is.EqualTo(150L));
            Assert.That(units[1]["type"], Is.EqualTo("depth"));
            Assert.That(units[1].ContainsKey("preprocessor"), Is.False);

            var bad = new PreprocessorConfiguration("canny");
            bad.Options["name"] = "other";
            request.Conditioning.ControlNets[0].Preprocessor = bad;
            Assert.Throws<ArgumentException>(() => EnhancedRequestTransformer.TransformData(request));
        }

        [Test]
        public void UpscaleAndPreprocessMessages_HaveTheProtocolsShape()
        {
            var upscale = EnhancedRequestTransformer.TransformUpscaleRequest(new UpscaleRequest
            {
                Image = new byte[] { 7 },
                Upscale = new UpscaleConfiguration { Model = "x2.safetensors", TileSize = 0 },
                Output = new OutputConfiguration { ReturnBase64 = true },
            }, "u-1");
            Assert.That(upscale["message_type"], Is.EqualTo("upscale"));
            var data = Section(upscale, "data");
            Assert.That(data["image"], Is.EqualTo(Convert.ToBase64String(new byte[] { 7 })));
            Assert.That(Section(data, "upscale")["enabled"], Is.EqualTo(true));
            Assert.That(Section(data, "upscale")["tile_size"], Is.EqualTo(0));
            Assert.That(Section(data, "output")["return_base64"], Is.EqualTo(true));
            Assert.That(data.ContainsKey("metadata"), Is.True);

            var preprocess = EnhancedRequestTransformer.TransformPreprocessRequest(new PreprocessRequest
            {
                Image = "aGk=", Preprocessor = PreprocessorConfiguration.Canny(),
            }, "p-1");
            Assert.That(preprocess["message_type"], Is.EqualTo("preprocess"));
            Assert.That(Section(Section(preprocess, "data"), "preprocessor")["name"], Is.EqualTo("canny"));
            Assert.Throws<ArgumentException>(() => EnhancedRequestTransformer.TransformPreprocessRequest(new PreprocessRequest { Image = "aGk=" }, "p-2"));
            Assert.Throws<ArgumentException>(() => EnhancedRequestTransformer.TransformUpscaleRequest(new UpscaleRequest(), "u-2"));
        }

        [TestCase("VALIDATION_ERROR", SdxlHostErrorCode.ValidationError)]
        [TestCase("MALFORMED_JSON", SdxlHostErrorCode.MalformedJson)]
        [TestCase("UNKNOWN_MESSAGE_TYPE", SdxlHostErrorCode.UnknownMessageType)]
        [TestCase("MESSAGE_TOO_LARGE", SdxlHostErrorCode.MessageTooLarge)]
        [TestCase("FEATURE_DISABLED", SdxlHostErrorCode.FeatureDisabled)]
        [TestCase("MODEL_NOT_FOUND", SdxlHostErrorCode.ModelNotFound)]
        [TestCase("MODEL_LOAD_ERROR", SdxlHostErrorCode.ModelLoadError)]
        [TestCase("QUEUE_FULL", SdxlHostErrorCode.QueueFull)]
        [TestCase("TIMEOUT", SdxlHostErrorCode.Timeout)]
        [TestCase("CANCELLED", SdxlHostErrorCode.Cancelled)]
        [TestCase("NOT_FOUND", SdxlHostErrorCode.NotFound)]
        [TestCase("PLUGIN_ERROR", SdxlHostErrorCode.PluginError)]
        [TestCase("OUTPUT_ERROR", SdxlHostErrorCode.OutputError)]
        [TestCase("SHUTTING_DOWN", SdxlHostErrorCode.ShuttingDown)]
        [TestCase("INTERNAL_ERROR", SdxlHostErrorCode.InternalError)]
        public void ErrorCodes_MapBothWays(string wire, SdxlHostErrorCode code)
        {
            Assert.That(SdxlHostErrorCodes.Parse(wire), Is.EqualTo(code));
            Assert.That(SdxlHostErrorCodes.ToWire(code), Is.EqualTo(wire));
        }

        [Test]
        public void ErrorCodes_UnknownAndNone()
        {
            Assert.That(SdxlHostErrorCodes.Parse("SOMETHING_NEW"), Is.EqualTo(SdxlHostErrorCode.Unknown));
            Assert.That(SdxlHostErrorCodes.Parse(null), Is.EqualTo(SdxlHostErrorCode.None));
            var error = new SdxlHostException("SOMETHING_NEW", "m", null, "r");
            Assert.That(error.ErrorCode, Is.EqualTo(SdxlHostErrorCode.Unknown));
            Assert.That(error.WireErrorCode, Is.EqualTo("SOMETHING_NEW"));
        }

        [Test]
        public void Service_AnswersAHostErrorWithSuccessFalse()
        {
            var error = new SdxlHostException("MODEL_NOT_FOUND", "data.models.base: no model 'x'", "data.models.base", "r-9");
            using (var service = new EnhancedSDXLService(new FakeClient(() => { throw error; })))
            {
                EnhancedSDXLResponse response = service.GenerateEnhancedAsync(new EnhancedSDXLRequest()).Result;
                Assert.That(response.Success, Is.False);
                Assert.That(response.ErrorCode, Is.EqualTo(SdxlHostErrorCode.ModelNotFound));
                Assert.That(response.WireErrorCode, Is.EqualTo("MODEL_NOT_FOUND"));
                Assert.That(response.ErrorField, Is.EqualTo("data.models.base"));
                StringAssert.Contains("no model 'x'", response.Error);
                Assert.That(response.RequestId, Is.EqualTo("r-9"));
            }
        }

        [Test]
        public void Service_LetsConnectionFailuresAndCancellationThrow()
        {
            using (var service = new EnhancedSDXLService(new FakeClient(() => { throw new SdxlHostConnectionException("gone"); })))
            {
                var error = Assert.Throws<AggregateException>(() => service.GenerateEnhancedAsync(new EnhancedSDXLRequest()).Wait());
                Assert.That(error.InnerException, Is.InstanceOf<SdxlHostConnectionException>());
            }
            using (var service = new EnhancedSDXLService(new FakeClient(() => { throw new OperationCanceledException(); })))
            {
                var error = Assert.Throws<AggregateException>(() => service.GenerateEnhancedAsync(new EnhancedSDXLRequest(), CancellationToken.None).Wait());
                Assert.That(error.InnerException, Is.InstanceOf<OperationCanceledException>());
            }
        }

        [Test]
        public void Service_OverAnInjectedClient_LeavesItOpen()
        {
            var fake = new FakeClient(() => new EnhancedSDXLResponse { Success = true });
            using (var service = new EnhancedSDXLService(fake))
                Assert.That(service.GenerateEnhancedAsync(new EnhancedSDXLRequest(), new RecordingProgress()).Result.Success, Is.True);
            Assert.That(fake.Disposed, Is.False);
        }

        /// <summary>A test double of the client: GenerateAsync runs <c>generate</c>; every other call is not part of these tests.</summary>
        private sealed class FakeClient : ISdxlHostClient
        {
            private readonly Func<EnhancedSDXLResponse> generate_;

            public FakeClient(Func<EnhancedSDXLResponse> generate) { generate_ = generate; }

            public bool Disposed { get; private set; }
            public string PipeName { get { return "fake"; } }
            public bool IsConnected { get { return true; } }
            public Task ConnectAsync(CancellationToken cancellationToken = default(CancellationToken)) { return Task.FromResult(0); }
            public void Disconnect() { }
            public void Dispose() { Disposed = true; }

            public async Task<EnhancedSDXLResponse> GenerateAsync(EnhancedSDXLRequest request, IProgress<GenerationProgress> progress = null,
                                                                  CancellationToken cancellationToken = default(CancellationToken))
            {
                await Task.Yield();
                return generate_();
            }

            private static Task<T> NotUsed<T>() { throw new NotSupportedException("not used by these tests"); }
            public Task<EnhancedSDXLResponse> UpscaleAsync(UpscaleRequest request, IProgress<GenerationProgress> progress = null, CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<EnhancedSDXLResponse>(); }
            public Task<PreprocessResult> PreprocessAsync(PreprocessRequest request, CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<PreprocessResult>(); }
            public Task<CancelResult> CancelAsync(string requestId, CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<CancelResult>(); }
            public Task<PingResult> PingAsync(CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<PingResult>(); }
            public Task<HostStatus> GetStatusAsync(CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<HostStatus>(); }
            public Task<HostMetrics> GetMetricsAsync(CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<HostMetrics>(); }
            public Task<HostCapabilities> GetCapabilitiesAsync(CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<HostCapabilities>(); }
            public Task<List<ModelEntry>> ListModelsAsync(CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<List<ModelEntry>>(); }
            public Task<ModelLoadResult> LoadModelAsync(ModelKind kind, string name, CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<ModelLoadResult>(); }
            public Task<ModelLoadResult> UnloadModelAsync(ModelKind kind, string name, CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<ModelLoadResult>(); }
            public Task<ReloadResult> ReloadConfigAsync(CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<ReloadResult>(); }
            public Task ShutdownAsync(CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<int>(); }
            public Task<IDictionary<string, object>> SendAsync(string messageType, IDictionary<string, object> data, CancellationToken cancellationToken = default(CancellationToken)) { return NotUsed<IDictionary<string, object>>(); }
        }
    }
}
