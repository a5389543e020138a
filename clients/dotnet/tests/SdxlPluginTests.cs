// The client driving a real generation: sdxl-host with the product plugins (sdxl, schedulers)
// and the tiny random-weight SDXL model that the build writes (tools/make_tiny_sdxl). The ctest
// runner starts that host (ctest entry dotnet_client_sdxl, registered when the sdxl plugin is built).

using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;
using SdxlHost.Client;

namespace SdxlHost.Client.Tests
{
    /// <summary>Text-to-image through the sdxl plugin, as the C# service would ask for it.</summary>
    [TestFixture]
    public class SdxlPluginTests
    {
        private const string kTinyModel = "tiny-sdxl";

        [Test]
        public void TinySdxl_GeneratesAPngAndReportsDenoiseStepsInOrder()
        {
            TestEnvironment.Run(async () =>
            {
                using (var client = await TestEnvironment.ConnectAsync())
                {
                    const int steps = 2;
                    var request = new EnhancedSDXLRequest();
                    request.Conditioning.Prompt = "a red cube on a table";
                    request.Conditioning.NegativePrompt = "blurry";
                    request.Model.Base = kTinyModel;
                    request.Scheduler.Type = "Euler a";  // an A1111 name: the host's schedulers plugin resolves it
                    request.Scheduler.Steps = steps;
                    request.Scheduler.GuidanceScale = 5.0;
                    request.Hyperparameters.Seed = 42;
                    request.Hyperparameters.Width = 64;
                    request.Hyperparameters.Height = 64;
                    request.Output.ReturnBase64 = true;
                    var progress = new RecordingProgress();

                    EnhancedSDXLResponse response = await client.GenerateAsync(request, progress);

                    Assert.That(response.Success, Is.True);
                    CollectionAssert.Contains(response.Stages, "denoise");
                    GeneratedImage image = response.GeneratedImages.Single();
                    byte[] png = image.GetImageBytes();
                    Assert.That(png.Take(4).ToArray(), Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }));
                    Assert.That(image.Metadata.Seed, Is.EqualTo(42));
                    List<int> denoiseSteps = progress.Events
                        .Where(e => e.Stage == "denoise" && !e.IsStageStart && e.Detail == null).Select(e => e.Step).ToList();
                    Assert.That(denoiseSteps, Is.EqualTo(Enumerable.Range(1, steps)), "the runner sets progress_interval_ms 0");
                }
            }, 240);
        }
    }
}
