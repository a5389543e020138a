// The client driving real generations: sdxl-host with the product plugins (sdxl, schedulers, lora,
// controlnet, upscaler, and refiner where built) and the goldens' tiny models, which the ctest
// runner copies into the host's models_root: checkpoints/tiny (tiny SDXL), checkpoints/tiny_refiner,
// loras/test_lora.safetensors, controlnet/controlnet_tiny, upscalers/rrdbnet_x2_tiny.safetensors.
// Entry dotnet_client_sdxl; random-weight models, so the images are noise: these tests check that
// every feature reaches its plugin and comes back typed, not what the pictures show.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using NUnit.Framework;
using SdxlHost.Client;

namespace SdxlHost.Client.Tests
{
    /// <summary>Every feature of the host, typed, as the C# service would ask for it.</summary>
    [TestFixture]
    public class SdxlPluginTests
    {
        private const string kTinyModel = "tiny";
        private static readonly byte[] kPngMagic = { 0x89, (byte)'P', (byte)'N', (byte)'G' };

        private static string Golden(string relativePath)
        {
            return Path.Combine(TestEnvironment.Require("SDXLHOST_TEST_GOLDENS"), relativePath);
        }

        /// <summary>A small, fast request for the tiny model (64x64, its native size).</summary>
        private static EnhancedSDXLRequest TinyRequest(long seed, int steps = 2)
        {
            var request = new EnhancedSDXLRequest();
            request.Conditioning.Prompt = "a red cube on a table";
            request.Model.Base = kTinyModel;
            request.Scheduler.Steps = steps;
            request.Scheduler.GuidanceScale = 5.0;
            request.Hyperparameters.Seed = seed;
            request.Hyperparameters.Width = 64;
            request.Hyperparameters.Height = 64;
            return request;
        }

        private static void AssertPng(byte[] bytes, int width, int height)
        {
            Assert.That(bytes, Is.Not.Null);
            Assert.That(bytes.Take(4).ToArray(), Is.EqualTo(kPngMagic));
            Func<int, int> readInt = at => (bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3];
            Assert.That(new[] { readInt(16), readInt(20) }, Is.EqualTo(new[] { width, height }), "IHDR width and height");
        }

        [Test]
        public void TinySdxl_GeneratesAPngAndReportsDenoiseStepsInOrder()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    const int steps = 2;
                    var request = TinyRequest(42, steps);
                    request.Conditioning.NegativePrompt = "blurry";
                    request.Scheduler.Type = "Euler a";  // an A1111 name: the host's schedulers plugin resolves it
                    request.Output.ReturnBase64 = true;
                    var progress = new RecordingProgress();

                    EnhancedSDXLResponse response = await client.GenerateAsync(request, progress);

                    Assert.That(response.Success, Is.True);
                    CollectionAssert.Contains(response.Stages, "denoise");
                    GeneratedImage image = response.GeneratedImages.Single();
                    AssertPng(image.ImageBytes, 64, 64);
                    Assert.That(image.Metadata.Seed, Is.EqualTo(42));
                    Assert.That(image.Metadata.ModelInfo.BaseModel, Is.EqualTo(kTinyModel));
                    List<int> denoiseSteps = progress.Events
                        .Where(e => e.Stage == "denoise" && !e.IsStageStart && e.Detail == null).Select(e => e.Step).ToList();
                    Assert.That(denoiseSteps, Is.EqualTo(Enumerable.Range(1, steps)), "the runner sets progress_interval_ms 0");
                }
            }, 240);
        }

        [Test]
        public void APlainTextToImageRequest_GetsNoWarning()
        {
            TestEnvironment.Run(async () =>
            {
                // Only what a service sets for text-to-image; everything else is the model's default.
                using (var service = new EnhancedSDXLService(TestEnvironment.PipeName))
                {
                    var request = new EnhancedSDXLRequest();
                    request.Conditioning.Prompt = "a lighthouse at dusk";
                    request.Conditioning.NegativePrompt = "blurry";
                    request.Model.Base = kTinyModel;
                    request.Scheduler.Steps = 2;
                    request.Hyperparameters.Width = 64;
                    request.Hyperparameters.Height = 64;
                    EnhancedSDXLResponse response = await service.GenerateEnhancedAsync(request);
                    Assert.That(response.Success, Is.True, response.Error);
                    Assert.That(response.Warnings, Is.Empty, string.Join(" | ", response.Warnings));
                    Assert.That(response.GeneratedImages.Single().ImageBytes, Is.Not.Null, "not saved: the bytes come back");
                    Assert.That(response.GeneratedImages.Single().Metadata.Seed, Is.Not.Null, "the host's random seed is reported");
                }
            }, 120);
        }

        [Test]
        public void ALoRAGivenByPath_IsAppliedByName_AndReportedInTheMetadata()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var request = TinyRequest(3);
                    request.Conditioning.LoRAs.Add(new LoRAConfiguration { ModelPath = "/opt/models/loras/test_lora.safetensors", Weight = 0.8 });
                    EnhancedSDXLResponse withLoRA = await client.GenerateAsync(request);
                    AppliedLoRA applied = withLoRA.GeneratedImages.Single().Metadata.LoRAs.Single();
                    Assert.That(applied.Name, Is.EqualTo("test_lora"));
                    Assert.That(applied.Weight, Is.EqualTo(0.8));
                    Assert.That(applied.Hash, Is.Not.Null.And.Not.Empty);
                    Assert.That(withLoRA.Warnings, Is.Empty, string.Join(" | ", withLoRA.Warnings));

                    EnhancedSDXLResponse without = await client.GenerateAsync(TinyRequest(3));
                    Assert.That(without.GeneratedImages.Single().Metadata.LoRAs, Is.Empty);
                    Assert.That(without.GeneratedImages.Single().ImageBytes, Is.Not.EqualTo(withLoRA.GeneratedImages.Single().ImageBytes),
                                "the LoRA changed the image");
                }
            }, 120);
        }

        [Test]
        public void AControlNetUnitWithACannyPreprocessor_RunsAndABadOptionIsNamed()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var request = TinyRequest(4);
                    request.Conditioning.ControlNets.Add(new ControlNetConfiguration
                    {
                        Model = "controlnet_tiny",
                        ControlImage = ImageInput.FromFile(Golden("controlnet/control_image.png")),
                        ConditioningScale = 0.7,
                        GuidanceEnd = 0.67,
                        Preprocessor = PreprocessorConfiguration.Canny(50, 150),
                    });
                    EnhancedSDXLResponse response = await client.GenerateAsync(request);
                    CollectionAssert.Contains(response.Stages, "controlnet_prepare");
                    AssertPng(response.GeneratedImages.Single().ImageBytes, 64, 64);
                    Assert.That(response.Warnings, Is.Empty, string.Join(" | ", response.Warnings));

                    request.Conditioning.ControlNets[0].Preprocessor.Options["aperture_size"] = 4;  // must be 3, 5 or 7
                    var error = await TestEnvironment.CatchAsync<SdxlHostException>(() => client.GenerateAsync(request));
                    Assert.That(error.ErrorCode, Is.EqualTo(SdxlHostErrorCode.ValidationError), error.Message);
                    Assert.That(error.Field, Is.EqualTo("data.controlnet.preprocessor.aperture_size"), error.Message);
                }
            }, 120);
        }

        [Test]
        public void Preprocess_ReturnsTheCannyMap_AndCapabilitiesDescribeItsOptions()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    HostCapabilities capabilities = await client.GetCapabilitiesAsync();
                    PreprocessorInfo canny = capabilities.PreprocessorDetails.Single(p => p.Name == "canny");
                    PreprocessorOptionInfo low = canny.Options.Single(o => o.Name == "low_threshold");
                    Assert.That(low.Type, Is.EqualTo("number"));
                    Assert.That(low.Maximum, Is.GreaterThan(0.0));

                    PreprocessResult map = await client.PreprocessAsync(new PreprocessRequest
                    {
                        Image = ImageInput.FromFile(Golden("controlnet/control_image.png")),
                        Preprocessor = PreprocessorConfiguration.Canny(50, 150),
                    });
                    Assert.That(map.Preprocessor, Is.EqualTo("canny"));
                    Assert.That(Convert.ToDouble(map.Options["low_threshold"]), Is.EqualTo(50.0));
                    Assert.That(map.Options.ContainsKey("aperture_size"), Is.True, "defaults filled in");
                    AssertPng(map.ImageBytes, 64, 64);
                }
            });
        }

        [Test]
        public void ImageToImage_FromAFile_SendsStrengthWithoutWarning()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var request = TinyRequest(5, 4);
                    request.Hyperparameters.InitImage = ImageInput.FromFile(Golden("controlnet/control_image.png"));
                    request.Hyperparameters.Strength = 0.5;
                    var progress = new RecordingProgress();
                    EnhancedSDXLResponse response = await client.GenerateAsync(request, progress);
                    Assert.That(response.Warnings, Is.Empty, string.Join(" | ", response.Warnings));
                    AssertPng(response.GeneratedImages.Single().ImageBytes, 64, 64);
                    GenerationProgress last = progress.Events.Last(e => e.Stage == "denoise");
                    Assert.That(last.Step, Is.EqualTo(last.TotalSteps));
                }
            }, 120);
        }

        [Test]
        public void UpscaleMessage_WithTheNetworkAndWithLanczos()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var progress = new RecordingProgress();
                    EnhancedSDXLResponse network = await client.UpscaleAsync(new UpscaleRequest
                    {
                        Image = ImageInput.FromFile(Golden("controlnet/control_image.png")),
                        Upscale = new UpscaleConfiguration { Model = "rrdbnet_x2_tiny.safetensors", TileSize = 32, TileOverlap = 4 },
                    }, progress);
                    GeneratedImage image = network.GeneratedImages.Single();
                    AssertPng(image.ImageBytes, 128, 128);
                    Assert.That(image.Metadata.Upscaler.Architecture, Is.EqualTo("RRDBNet"));
                    Assert.That(image.Metadata.Upscaler.ModelScale, Is.EqualTo(2));
                    Assert.That(image.Metadata.Upscaler.FromWidth, Is.EqualTo(64));
                    GenerationProgress lastTile = progress.Events.Last(e => e.Stage == "upscale");
                    Assert.That(lastTile.TotalSteps, Is.GreaterThan(1), "tiled");
                    Assert.That(lastTile.Step, Is.EqualTo(lastTile.TotalSteps));

                    EnhancedSDXLResponse lanczos = await client.UpscaleAsync(new UpscaleRequest
                    {
                        Image = File.ReadAllBytes(Golden("controlnet/control_image.png")),
                        Upscale = new UpscaleConfiguration { Method = UpscaleMethod.Lanczos, Scale = 1.5 },
                    });
                    AssertPng(lanczos.GeneratedImages.Single().ImageBytes, 96, 96);
                    Assert.That(lanczos.GeneratedImages.Single().Metadata.Upscaler.Method, Is.EqualTo("lanczos"));

                    var missing = await TestEnvironment.CatchAsync<SdxlHostException>(() => client.UpscaleAsync(new UpscaleRequest
                    {
                        Image = File.ReadAllBytes(Golden("controlnet/control_image.png")), Upscale = new UpscaleConfiguration { Model = "absent.pth" },
                    }));
                    Assert.That(missing.ErrorCode, Is.EqualTo(SdxlHostErrorCode.ModelNotFound), missing.Message);
                    Assert.That(missing.Field, Is.EqualTo("data.upscale.model"), missing.Message);
                }
            }, 120);
        }

        [Test]
        public void PostProcessingUpscale_EnlargesTheGeneratedImage()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    var request = TinyRequest(6);
                    request.PostProcessing.Upscale.Method = UpscaleMethod.Lanczos;
                    request.PostProcessing.Upscale.Scale = 2;
                    EnhancedSDXLResponse response = await client.GenerateAsync(request);
                    CollectionAssert.Contains(response.Stages, "upscale");
                    GeneratedImage image = response.GeneratedImages.Single();
                    AssertPng(image.ImageBytes, 128, 128);
                    Assert.That(image.Metadata.Upscaler.Name, Is.EqualTo("lanczos"));
                    Assert.That(image.Metadata.Seed, Is.EqualTo(6), "the generation's metadata is kept beside the upscaler's");
                }
            }, 120);
        }

        [Test]
        public void RefinerSettings_ReachTheHost()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    // The host checks the refiner's hyperparameters whatever plugins are loaded.
                    var bad = TinyRequest(7);
                    bad.Hyperparameters.DenoisingEnd = 1.5;
                    var error = await TestEnvironment.CatchAsync<SdxlHostException>(() => client.GenerateAsync(bad));
                    Assert.That(error.Field, Is.EqualTo("data.hyperparameters.denoising_end"), error.Message);
                    bad.Hyperparameters.DenoisingEnd = null;
                    bad.Hyperparameters.NegativeAestheticScore = 11;
                    error = await TestEnvironment.CatchAsync<SdxlHostException>(() => client.GenerateAsync(bad));
                    Assert.That(error.Field, Is.EqualTo("data.hyperparameters.negative_aesthetic_score"), error.Message);

                    var request = TinyRequest(8, 4);
                    request.Model.Refiner = "tiny_refiner";
                    request.Hyperparameters.DenoisingEnd = 0.5;
                    request.Hyperparameters.AestheticScore = 6.5;
                    request.Hyperparameters.NegativeAestheticScore = 2.0;
                    PluginInfo refiner = (await client.GetCapabilitiesAsync()).FindPlugin("refiner");
                    if (refiner != null && refiner.State == "loaded")
                    {
                        // The ensemble of experts: the base runs to 0.5, the refiner finishes.
                        var progress = new RecordingProgress();
                        EnhancedSDXLResponse response = await client.GenerateAsync(request, progress);
                        GeneratedImage image = response.GeneratedImages.Single();
                        Assert.That(image.Metadata.ModelInfo.RefinerModel, Is.EqualTo("tiny_refiner"));
                        Assert.That(image.Metadata.Refiner.Name, Is.EqualTo("tiny_refiner"));
                        Assert.That(image.Metadata.Refiner.SwitchAt, Is.EqualTo(0.5));
                        CollectionAssert.Contains(progress.Events.Select(e => e.Stage).ToList(), "refine");
                        Assert.That(response.Warnings, Is.Empty, string.Join(" | ", response.Warnings));
                    }
                    else
                    {
                        // This build has no refiner plugin: the request is refused naming the field and the switch.
                        error = await TestEnvironment.CatchAsync<SdxlHostException>(() => client.GenerateAsync(request));
                        Assert.That(error.ErrorCode, Is.EqualTo(SdxlHostErrorCode.FeatureDisabled), error.Message);
                        Assert.That(error.Field, Is.EqualTo("data.models.refiner"), error.Message);
                        StringAssert.Contains("plugins.enabled.refiner", error.Message);
                    }
                }
            }, 120);
        }

        [Test]
        public void LoadModel_PreloadsTheCheckpoint_AndListModelsShowsEveryTestModel()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    List<ModelEntry> models = await client.ListModelsAsync();
                    string listed = string.Join(",", models.Select(m => m.Kind + "/" + m.Name));
                    foreach (string expected in new[] { "checkpoints/tiny", "loras/test_lora", "controlnet/controlnet_tiny" })
                        Assert.That(models.Any(m => m.Kind + "/" + m.Name == expected), Is.True, expected + " in " + listed);

                    ModelLoadResult loaded = await client.LoadModelAsync(ModelKind.Checkpoints, kTinyModel);
                    Assert.That(loaded.Loaded, Is.True);
                    Assert.That(loaded.Cache.Models.Any(m => m.Kind == "checkpoints" && m.Name == kTinyModel && m.Bytes > 0), Is.True);
                    ModelLoadResult controlnet = await client.LoadModelAsync(ModelKind.ControlNet, "controlnet_tiny");
                    Assert.That(controlnet.Loaded, Is.True);
                    Assert.That((await client.UnloadModelAsync(ModelKind.ControlNet, "controlnet_tiny")).Unloaded, Is.True);
                }
            }, 120);
        }
    }
}
